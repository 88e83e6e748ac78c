//! The store filler against real stores (every backend `xray_store::testing`
//! provides): everything written can be read back, with the generated shape.

use std::time::Duration;

use xray_loadgen::{FillArgs, HumanDuration};
use xray_store::{ExecutionFilter, PageRequest, Scope, TimeWindow};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_every_backend_and_reads_back() {
    for tb in xray_store::testing::backends().await {
        let args = FillArgs {
            executions: 1_234,
            batch_executions: 500,
            window: HumanDuration(Duration::from_secs(3600)),
            ..FillArgs::default()
        };
        let report = xray_loadgen::fill_store(tb.backend.as_ref(), &args, false)
            .await
            .unwrap();
        assert_eq!(report.executions, 1_234, "{}", tb.name);
        assert_eq!(report.batches, 3);
        assert!(report.steps >= 1_234 * 8 && report.steps <= 1_234 * 12);

        // page through everything: counts match what was written
        let mut page = PageRequest {
            limit: 500,
            after: None,
        };
        let (mut executions, mut steps) = (0u64, 0u64);
        loop {
            let p = tb
                .backend
                .list_executions(&Scope::All, &ExecutionFilter::default(), &page)
                .await
                .unwrap();
            executions += p.items.len() as u64;
            steps += p.items.iter().map(|s| s.step_count).sum::<u64>();
            match p.next {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }
        assert_eq!(executions, report.executions, "{}", tb.name);
        assert_eq!(steps, report.steps, "{}", tb.name);

        // the window is honoured and the funnel has the pipeline's shape
        let window = TimeWindow {
            from_ns: report.from_ns,
            to_ns: report.to_ns + 1,
        };
        let pipelines = tb.backend.pipelines(&Scope::All, window).await.unwrap();
        assert_eq!(pipelines.len(), 4, "{}", tb.name);
        assert_eq!(
            pipelines.iter().map(|p| p.executions).sum::<u64>(),
            report.executions
        );
        let funnel = tb
            .backend
            .pipeline_funnel(&Scope::All, &pipelines[0].pipeline, window)
            .await
            .unwrap();
        let names: Vec<&str> = funnel.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.first(), Some(&"generate_keywords"), "{names:?}");
        assert_eq!(names.last(), Some(&"select_best"), "{names:?}");
        let price = funnel.iter().find(|s| s.name == "price_filter").unwrap();
        assert!(price.total_out < price.total_in);
        assert!(!price.top_rejections.is_empty());

        // filling again with the same seed rewrites the same identities
        let again = xray_loadgen::fill_store(tb.backend.as_ref(), &args, false)
            .await
            .unwrap();
        assert_eq!(again.executions, 1_234);
        let all = tb
            .backend
            .pipelines(
                &Scope::All,
                TimeWindow {
                    from_ns: 0,
                    to_ns: i64::MAX,
                },
            )
            .await
            .unwrap();
        assert_eq!(all.iter().map(|p| p.executions).sum::<u64>(), 1_234);
    }
}
