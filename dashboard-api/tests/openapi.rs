//! The OpenAPI document matches the router: every documented operation is
//! served, every served route is documented, and the docs page is offline.

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::*;
use xray_store::testing::backends;

/// Every route the router serves, besides the two documentation routes.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/executions"),
    ("get", "/api/v1/executions/{id}"),
    ("get", "/api/v1/executions/{id}/steps"),
    ("get", "/api/v1/executions/{id}/funnel"),
    ("get", "/api/v1/executions/{a}/diff/{b}"),
    ("get", "/api/v1/pipelines"),
    ("get", "/api/v1/pipelines/{name}/funnel"),
    ("post", "/api/v1/apps"),
    ("get", "/api/v1/apps"),
    ("post", "/api/v1/apps/{id}/keys"),
    ("delete", "/api/v1/keys/{id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/v1/events"),
    ("get", "/v1/events/{span_id}"),
    ("get", "/v1/traces"),
    ("get", "/runs"),
    ("get", "/runs/{id}"),
    ("get", "/runs/{id}/steps"),
    ("get", "/analyze/{run_id}"),
];

/// The routes compatible with the earlier services: authenticated, with
/// their own error bodies.
fn is_compat(path: &str) -> bool {
    ["/v1/", "/runs", "/analyze/"]
        .iter()
        .any(|p| path.starts_with(p))
}

#[tokio::test]
async fn spec_and_router_agree() {
    let t = backends().await.remove(0);
    write(&t, shop_run("shop-1", T0)).await;
    let app = app_with_auth(&t, &auth_config(false));
    let spec = ok(&app, "/api/openapi.json").await;
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "OpenAPI 3.1"
    );
    assert_eq!(
        spec,
        serde_json::to_value(xray_dashboard_api::openapi()).unwrap()
    );

    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            let success = if method == "post" { "201" } else { "200" };
            assert!(
                op["responses"][success].is_object(),
                "{method} {path} documents {success}"
            );
            // Authenticated routes say so, with the answers auth may give.
            if path.starts_with("/api/v1/") {
                let security = op["security"].as_array().expect("security");
                let admin = op["tags"][0] == "admin";
                for s in security {
                    for name in s.as_object().unwrap().keys() {
                        assert!(
                            spec["components"]["securitySchemes"][name].is_object(),
                            "{method} {path}: scheme {name} is defined"
                        );
                    }
                }
                if admin {
                    assert_eq!(security, &vec![serde_json::json!({"admin_token": []})]);
                    assert!(op["responses"]["403"].is_object(), "{method} {path}");
                } else {
                    assert!(security.contains(&serde_json::json!({"bearer": []})));
                    assert!(security.contains(&serde_json::json!({"api_key": []})));
                }
                for code in ["401", "429"] {
                    assert!(
                        op["responses"][code].is_object(),
                        "{method} {path} documents {code}"
                    );
                }
            } else if is_compat(path) {
                let security = op["security"].as_array().expect("security");
                assert!(security.contains(&serde_json::json!({"bearer": []})));
                assert!(security.contains(&serde_json::json!({"api_key": []})));
                assert!(op["responses"]["401"].is_object(), "{method} {path}");
            } else {
                assert!(op.get("security").is_none(), "{method} {path} is open");
            }
            // Path parameters are declared.
            for seg in path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(|c| c == '{' || c == '}');
                let params = op["parameters"].as_array().expect("parameters");
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path"),
                    "{method} {path} declares {name}"
                );
            }
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, expected,
        "documented operations = router's routes"
    );

    // Every documented operation is served: call it with its path params
    // filled in (an existing execution), never the "no route" fallback.
    let (shop_app, _) = new_app(&t, "Docs Shop").await;
    let (_, _, created) = send(
        &app,
        "POST",
        "/api/v1/apps/docs-shop/keys",
        &[("authorization", format!("Bearer {ADMIN}").as_str())],
        None,
    )
    .await;
    let key_id = created["id"].as_str().unwrap().to_string();
    for (method, path) in &documented {
        let uri = if path.starts_with("/api/v1/apps/") {
            path.replace("{id}", &shop_app)
        } else if path.starts_with("/api/v1/keys/") {
            path.replace("{id}", &key_id)
        } else if path == "/v1/events" {
            "/v1/events?trace_id=shop-1".to_string()
        } else if path == "/v1/events/{span_id}" {
            let span = t
                .backend
                .get_execution(&xray_store::Scope::All, "shop-1")
                .await
                .unwrap()
                .unwrap()
                .steps[0]
                .span_id
                .clone();
            format!("/v1/events/{span}")
        } else {
            path.replace("{id}", "shop-1")
                .replace("{run_id}", "shop-1")
                .replace("{a}", "shop-1")
                .replace("{b}", "shop-1")
                .replace("{name}", "shop")
        };
        let body = (uri == "/api/v1/apps").then_some(r#"{"name": "Another"}"#);
        let bearer = format!("Bearer {ADMIN}");
        let headers: &[(&str, &str)] = if path.contains("/apps") || path.contains("/keys") {
            &[("authorization", bearer.as_str())]
        } else {
            &[]
        };
        let (s, _, v) = send(&app, &method.to_uppercase(), &uri, headers, body).await;
        assert!(s.is_success(), "{method} {uri}: {s} {v}");
    }
    // And the fallback really is distinguishable.
    let (s, v) = get(&app, "/api/v1/executions/shop-1/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["message"].as_str().unwrap().starts_with("no route for"));

    // Query parameters documented for the list are the ones it accepts.
    let list = &spec["paths"]["/api/v1/executions"]["get"]["parameters"];
    let names: BTreeSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let want: BTreeSet<&str> = [
        "pipeline",
        "status",
        "environment",
        "service",
        "from",
        "to",
        "q",
        "min_duration_ms",
        "limit",
        "cursor",
    ]
    .into_iter()
    .collect();
    assert_eq!(names, want);
    for p in &want {
        let (s, _) = get(&app, &format!("/api/v1/executions?{p}=")).await;
        // Accepted as a parameter name (the value may still be invalid).
        let (s2, v2) = get(&app, &format!("/api/v1/executions?x{p}=1")).await;
        assert_ne!(s, StatusCode::NOT_FOUND);
        assert_eq!(s2, StatusCode::BAD_REQUEST);
        assert_eq!(v2["param"], format!("x{p}"));
    }

    // Schemas referenced by the spec exist.
    let text = spec.to_string();
    for part in text.split("\"#/components/schemas/").skip(1) {
        let name = &part[..part.find('"').unwrap()];
        assert!(
            spec["components"]["schemas"][name].is_object(),
            "schema {name} is defined"
        );
    }
}

#[tokio::test]
async fn docs_page_is_self_contained() {
    let t = backends().await.remove(0);
    let app = app(&t);
    let (s, v) = get(&app, "/api/docs").await;
    assert_eq!(s, StatusCode::OK);
    let html = v.as_str().unwrap();
    assert!(html.contains("<title>X-Ray dashboard API reference</title>"));
    assert!(html.contains("fetch(\"openapi.json\")"));
    for external in ["http://", "https://", "//cdn", "<link ", " src="] {
        assert!(
            !html.contains(external),
            "docs page loads nothing external ({external})"
        );
    }
}
