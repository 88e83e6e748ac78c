//! A competitor-selection pipeline instrumented with X-Ray.
//!
//! Given one of our products, find the competitor product to benchmark
//! against: an LLM writes search keywords, a catalogue search returns
//! thousands of candidates, filters drop most of them (price band, rating,
//! wrong category), a ranker scores the rest and an LLM picks one. The data
//! is fake but plausible and fully deterministic (a seeded generator, no
//! network calls besides the export to X-Ray).
//!
//! Run a collector (`xray serve`), then:
//!
//! ```text
//! cargo run -p xray-sdk --example competitor_selection
//! ```
//!
//! It sends OTLP/gRPC to 127.0.0.1:4317, or to `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (with `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf` for OTLP/HTTP). Set
//! `XRAY_API_KEY` when the collector requires keys and `XRAY_LIVE=1` to send
//! each step as its own span.
//!
//! Options:
//! - `--runs N`: run the pipeline N times, cycling through a small
//!   catalogue of our products ([`our_products`]); one of them finds no
//!   competitor, so its execution fails. Default: one run for
//!   [`our_product`].
//! - `--json`: print one JSON line per execution on stdout (id, product,
//!   status, candidate counts, rejection reasons, selection): what the
//!   run recorded, for scripts and tests to check against.

use serde::Serialize;
use xray_sdk::{Decision, DeliveryMode, Execution, StepType, XRay};

/// One of our products, the input of the pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct Product {
    /// Our product id.
    pub asin: String,
    /// Catalogue title.
    pub title: String,
    /// Catalogue category path.
    pub category: String,
    /// Our price in USD.
    pub price: f64,
}

/// A product found by the catalogue search.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// Product id.
    pub asin: String,
    /// Catalogue title.
    pub title: String,
    /// Catalogue category path.
    pub category: String,
    /// Price in USD.
    pub price: f64,
    /// Average rating, 2.5–5.0.
    pub rating: f64,
    /// Number of reviews.
    pub reviews: u32,
}

/// The product the example looks for competitors of.
pub fn our_product() -> Product {
    Product {
        asin: "B0OURS0032".into(),
        title: "ColdKeep Insulated Water Bottle 32 oz".into(),
        category: "Sports & Outdoors > Water Bottles".into(),
        price: 29.99,
    }
}

/// The products `--runs` cycles through: [`our_product`] first, then
/// others in other categories and price ranges. The last one is in a
/// category the catalogue search never returns, so every candidate is
/// filtered out and its execution fails.
pub fn our_products() -> Vec<Product> {
    let p = |asin: &str, title: &str, category: &str, price: f64| Product {
        asin: asin.into(),
        title: title.into(),
        category: category.into(),
        price,
    };
    vec![
        our_product(),
        p(
            "B0OURS0100",
            "TrailSip Stainless Steel Bottle 1L",
            "Sports & Outdoors > Water Bottles",
            44.5,
        ),
        p(
            "B0OURS0024",
            "CommuteMug Vacuum Flask 24 oz",
            "Kitchen > Travel Mugs",
            24.0,
        ),
        p(
            "B0OURS0012",
            "LittleSip Kids Water Bottle 12 oz",
            "Baby > Sippy Cups",
            12.99,
        ),
        p(
            "B0OURS0020",
            "ClearDay Glass Water Bottle 20 oz",
            "Kitchen > Glassware",
            18.0,
        ),
    ]
}

/// What one execution recorded, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Execution id.
    pub execution_id: String,
    /// Our product's id.
    pub product: String,
    /// `completed` or `failed`.
    pub status: &'static str,
    /// Why the execution failed.
    pub error: Option<String>,
    /// Candidates the search returned.
    pub found: u64,
    /// Candidates left after the filters.
    pub kept: u64,
    /// Candidates left after ranking.
    pub ranked: u64,
    /// Filter rejections, reason → count, in the order the filter applies
    /// them.
    pub rejections: Vec<(&'static str, u64)>,
    /// The selected competitor's id.
    pub selected: Option<String>,
}

/// Runs one execution of the pipeline for `product`, recording it with
/// `xray`. Returns the execution id and the selected competitor (or the
/// error the execution failed with).
pub fn run_pipeline(xray: &XRay, product: &Product) -> (String, Result<Candidate, String>) {
    let (report, result) = run_pipeline_reported(xray, product);
    (report.execution_id, result)
}

/// [`run_pipeline`], also returning what the execution recorded.
pub fn run_pipeline_reported(
    xray: &XRay,
    product: &Product,
) -> (Report, Result<Candidate, String>) {
    let exec = xray
        .execution("competitor-selection")
        .input(product)
        .tag("example")
        .metadata("catalogue", "us")
        .start();
    let mut report = Report {
        execution_id: exec.id().unwrap_or_default().to_owned(),
        product: product.asin.clone(),
        status: "completed",
        error: None,
        found: 0,
        kept: 0,
        ranked: 0,
        rejections: Vec::new(),
        selected: None,
    };
    let result = run(&exec, product, &mut report);
    match &result {
        Ok(best) => {
            report.selected = Some(best.asin.clone());
            exec.complete(best)
        }
        Err(e) => {
            report.status = "failed";
            report.error = Some(e.clone());
            exec.fail(e)
        }
    }
    (report, result)
}

/// Small deterministic generator (64-bit LCG), so every run produces the
/// same catalogue.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn unit(&mut self) -> f64 {
        (self.next() % 10_000) as f64 / 10_000.0
    }
    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const BRANDS: &[&str] = &[
    "HydroPeak",
    "Trailmate",
    "AquaNova",
    "Summit",
    "EverFlask",
    "Polar Pro",
    "Kinetic",
    "Wildway",
    "Ironclad",
    "BlueRidge",
];
const KINDS: &[&str] = &[
    "Insulated Water Bottle 32 oz",
    "Stainless Steel Bottle 1L",
    "Vacuum Flask 24 oz",
    "Sports Bottle with Straw Lid",
    "Kids Water Bottle 12 oz",
    "Glass Water Bottle 20 oz",
];
const CATEGORIES: &[&str] = &[
    "Sports & Outdoors > Water Bottles",
    "Sports & Outdoors > Water Bottles",
    "Sports & Outdoors > Water Bottles",
    "Kitchen > Travel Mugs",
    "Baby > Sippy Cups",
];

/// The fake LLM: turns a product title into search keywords.
fn generate_keywords(product: &Product) -> Vec<String> {
    vec![
        "insulated water bottle 32 oz".into(),
        "stainless steel water bottle".into(),
        format!("{} alternative", product.title.to_lowercase()),
    ]
}

/// The fake catalogue search: 5,000 deterministic candidates.
fn search(keywords: &[String], n: usize) -> Vec<Candidate> {
    let mut rng = Rng(keywords.iter().map(|k| k.len() as u64).sum::<u64>() ^ 0x5eed);
    (0..n)
        .map(|i| {
            let brand = rng.pick(BRANDS);
            let kind = rng.pick(KINDS);
            Candidate {
                asin: format!("B0{:08X}", 0x1000_0000u32 + i as u32),
                title: format!("{brand} {kind}"),
                category: rng.pick(CATEGORIES).to_string(),
                price: ((8.0 + rng.unit() * 72.0) * 100.0).round() / 100.0,
                rating: ((2.5 + rng.unit() * 2.5) * 10.0).round() / 10.0,
                reviews: (rng.next() % 20_000) as u32,
            }
        })
        .collect()
}

/// Score of a candidate against our product: close price, good rating, many
/// reviews.
fn score(product: &Product, c: &Candidate) -> f64 {
    let price_fit = 1.0 - ((c.price - product.price).abs() / product.price).min(1.0);
    let rating = (c.rating - 2.5) / 2.5;
    let popularity = (c.reviews as f64 + 1.0).ln() / 20_000f64.ln();
    ((0.5 * price_fit + 0.3 * rating + 0.2 * popularity) * 1000.0).round() / 1000.0
}

fn run(exec: &Execution, product: &Product, report: &mut Report) -> Result<Candidate, String> {
    // 1. LLM writes keywords.
    let keywords = generate_keywords(product);
    exec.step("generate_keywords")
        .kind(StepType::Llm)
        .input(&format!(
            "Write 3 search queries that find direct competitors of: {}",
            product.title
        ))
        .output(&keywords)
        .reasoning(
            "Cover the generic product phrase, the material, and a direct-alternative query.",
        )
        .model("gpt-4o")
        .provider("openai")
        .tokens(152, 40)
        .cost(0.0011)
        .record();

    // 2. Catalogue search.
    let found = search(&keywords, 5000);
    report.found = found.len() as u64;
    exec.step("search_catalogue")
        .kind(StepType::Retrieval)
        .input(&keywords)
        .output(&serde_json::json!({ "hits": found.len(), "first": &found[..3] }))
        .candidates_out(found.len() as u64)
        .metadata("index", "catalogue-v7")
        .record();

    // 3. Filters: category, price band, rating.
    let mut f = exec
        .step("filter_candidates")
        .kind(StepType::Filter)
        .candidates_in(found.len() as u64)
        .input(&serde_json::json!({
            "category": product.category,
            "price_band": [product.price * 0.5, product.price * 1.5],
            "min_rating": 4.0,
        }));
    let mut kept = Vec::new();
    let (mut wrong_category, mut price, mut rating) = (0, 0, 0);
    for c in &found {
        let reason = if c.category != product.category {
            wrong_category += 1;
            Some("wrong_category")
        } else if c.price < product.price * 0.5 || c.price > product.price * 1.5 {
            price += 1;
            Some("price_out_of_band")
        } else if c.rating < 4.0 {
            rating += 1;
            Some("rating_below_4")
        } else {
            None
        };
        match reason {
            Some(r) => f = f.candidate(&c.asin, Decision::Rejected, r, None),
            None => {
                f = f.candidate(&c.asin, Decision::Accepted, None, None);
                kept.push(c.clone());
            }
        }
    }
    report.kept = kept.len() as u64;
    report.rejections = vec![
        ("wrong_category", wrong_category),
        ("price_out_of_band", price),
        ("rating_below_4", rating),
    ];
    f.reject("wrong_category", wrong_category)
        .reject("price_out_of_band", price)
        .reject("rating_below_4", rating)
        .candidates_out(kept.len() as u64)
        .reasoning(format!(
            "{} of {} candidates are in the category, within ±50% of ${:.2} and rated 4.0+",
            kept.len(),
            found.len(),
            product.price
        ))
        .record();

    // 4. Rank: a timed scope, recorded when it ends.
    let mut rank = exec.span_step("rank_candidates");
    rank.kind(StepType::Rank).candidates_in(kept.len() as u64);
    let mut ranked: Vec<(f64, Candidate)> =
        kept.into_iter().map(|c| (score(product, &c), c)).collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.asin.cmp(&b.1.asin)));
    let top: Vec<_> = ranked.into_iter().take(10).collect();
    report.ranked = top.len() as u64;
    for (s, c) in &top {
        rank.candidate(&c.asin, Decision::Accepted, None, *s);
    }
    rank.candidates_out(top.len() as u64)
        .output(
            &top.iter()
                .map(|(s, c)| (c.asin.as_str(), *s))
                .collect::<Vec<_>>(),
        )
        .reasoning("0.5 × price fit + 0.3 × rating + 0.2 × log review count; kept the top 10");
    rank.end();

    // 5. LLM selects one.
    let Some((best_score, best)) = top.first().cloned() else {
        exec.step("select_competitor")
            .kind(StepType::Select)
            .candidates_in(0)
            .fail("no candidate survived the filters")
            .record();
        return Err("no candidate survived the filters".into());
    };
    let mut select = exec
        .step("select_competitor")
        .kind(StepType::Select)
        .model("gpt-4o")
        .provider("openai")
        .tokens(980, 64)
        .candidates_in(top.len() as u64)
        .candidates_out(1)
        .confidence(0.87)
        .input(&top.iter().map(|(_, c)| c).collect::<Vec<_>>())
        .output(&best)
        .reasoning(format!(
            "{} matches the size and insulation of our bottle at a similar price (${:.2} vs ${:.2}) with {} reviews.",
            best.title, best.price, product.price, best.reviews
        ));
    for (s, c) in &top {
        let decision = if c.asin == best.asin {
            Decision::Selected
        } else {
            Decision::Rejected
        };
        let reason = (c.asin != best.asin).then_some("weaker_match");
        select = select.candidate(&c.asin, decision, reason, *s);
    }
    select.metadata("score", best_score).record();
    Ok(best)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = XRay::builder()
        .service("competitor-selector")
        .environment("dev");
    if let Ok(key) = std::env::var("XRAY_API_KEY") {
        builder = builder.api_key(key);
    }
    if std::env::var("XRAY_LIVE").is_ok_and(|v| v == "1") {
        builder = builder.mode(DeliveryMode::Live);
    }
    let xray = builder.build()?;

    let mut runs = 1usize;
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--runs takes a positive number")?;
            }
            "--json" => json = true,
            other => {
                return Err(format!("unknown argument {other:?} (use --runs N, --json)").into());
            }
        }
    }
    let products = if runs == 1 {
        vec![our_product()]
    } else {
        our_products()
    };
    let mut out = std::io::stdout().lock();
    for i in 0..runs {
        let product = &products[i % products.len()];
        let (report, result) = run_pipeline_reported(&xray, product);
        let id = &report.execution_id;
        match result {
            Ok(best) => eprintln!("selected {} ({}), execution {id}", best.asin, best.title),
            Err(e) => eprintln!("failed: {e}, execution {id}"),
        }
        if json {
            use std::io::Write;
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
        }
    }
    xray.shutdown()?;
    let stats = xray.stats();
    eprintln!(
        "exported {} span(s), {} failed, {} dropped",
        stats.exported_spans, stats.failed_spans, stats.dropped_spans
    );
    Ok(())
}
