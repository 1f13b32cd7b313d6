//! The Prometheus text of `Cache::prometheus_text`, read the way a scraper
//! reads it: labelled by cache and key template, never by resolved key,
//! with the counts the calls made.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_runtime::{cached, invalidates, Backend, Cache, Event, Hooks};
use support::RedisServer;

#[cached(ttl = "1h", key = "user:<id>")]
async fn user(id: u64) -> String {
    format!("user {id}")
}

#[cached(ttl = "1h", key = "team:<org>:<id>", cache = "teams")]
async fn team(org: &str, id: u32) -> Option<u32> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    Some(id)
}

#[invalidates("user:<id>")]
async fn rename(id: u64) {
    let _ = id;
}

#[cached(ttl = "1h", key = "plain:<n>")]
fn plain(n: u8) -> u8 {
    n
}

/// Under the default key: the module path, the function name and every
/// argument.
#[cached(ttl = "1h")]
async fn profile(id: u64, detailed: bool) -> String {
    format!("profile {id} {detailed}")
}

/// The samples of a Prometheus text, checked as a scraper would: every
/// sample's family has `# HELP` and `# TYPE` lines before it, and every
/// line parses. Keys are `name{labels}` as written.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut typed = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.push(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| typed.iter().any(|t| t == base))
            .unwrap_or(name);
        assert!(typed.iter().any(|t| t == family), "no # TYPE before {line}");
        assert!(series.ends_with('}'), "labels: {line}");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "a series twice: {line}"
        );
    }
    samples
}

fn get(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no series {series} in {samples:#?}"))
}

#[tokio::test]
async fn counters_are_labelled_by_cache_and_template_never_by_key() {
    let cache = Cache::builder().build().unwrap();
    cache
        .scope(async {
            for id in 0..100 {
                user(id).await;
            }
            for id in 0..100 {
                user(id).await;
            }
            for id in 0..10 {
                team("acme", id).await;
                team("acme", id).await;
                team("acme", id).await;
            }
            rename(7).await;
            user(7).await;
            plain(1);
            plain(1);
        })
        .await;
    let text = cache.prometheus_text();
    let samples = parse(&text);

    let user_series: Vec<_> = samples
        .keys()
        .filter(|s| s.contains("template=\"user:<id>\""))
        .collect();
    // One series per metric and label set, whatever the number of keys.
    assert!(
        !text.contains("user:7"),
        "a resolved key in the metrics:\n{text}"
    );
    assert!(user_series.len() < 40, "{user_series:#?}");

    let d = |metric: &str, template: &str, extra: &str| {
        get(
            &samples,
            &format!("{metric}{{cache=\"default\",template=\"{template}\"{extra}}}"),
        )
    };
    assert_eq!(d("cache_hits_total", "user:<id>", ",tier=\"l1\""), 100.0);
    assert_eq!(d("cache_hits_total", "user:<id>", ",tier=\"l2\""), 0.0);
    assert_eq!(d("cache_misses_total", "user:<id>", ""), 101.0);
    assert_eq!(d("cache_origin_calls_total", "user:<id>", ""), 101.0);
    assert_eq!(d("cache_sets_total", "user:<id>", ""), 101.0);
    assert_eq!(d("cache_hits_total", "plain:<n>", ",tier=\"l1\""), 1.0);
    assert_eq!(d("cache_misses_total", "plain:<n>", ""), 1.0);
    assert_eq!(
        get(&samples, "cache_deletes_total{cache=\"default\"}"),
        1.0,
        "the invalidation removed user 7"
    );
    assert_eq!(get(&samples, "cache_items{cache=\"default\"}"), 101.0);

    // The named cache has series of its own.
    let t = |metric: &str, extra: &str| {
        get(
            &samples,
            &format!("{metric}{{cache=\"teams\",template=\"team:<org>:<id>\"{extra}}}"),
        )
    };
    assert_eq!(t("cache_hits_total", ",tier=\"l1\""), 20.0);
    assert_eq!(t("cache_misses_total", ""), 10.0);
    assert_eq!(get(&samples, "cache_items{cache=\"teams\"}"), 10.0);

    // Origin call times: every call is in +Inf, each slept 2 ms or more.
    let h = |extra: &str| {
        t(
            "cache_operation_duration_seconds_bucket",
            &format!(",operation=\"origin\",le=\"{extra}\""),
        )
    };
    assert_eq!(h("+Inf"), 10.0);
    assert_eq!(h("0.001"), 0.0, "a 2 ms call counted under 1 ms");
    assert!(h("0.0025") <= h("0.005") && h("0.005") <= h("+Inf"));
    assert_eq!(
        t(
            "cache_operation_duration_seconds_count",
            ",operation=\"origin\""
        ),
        10.0
    );
    assert!(
        t(
            "cache_operation_duration_seconds_sum",
            ",operation=\"origin\""
        ) >= 0.02
    );

    // Handle calls count under `-`.
    cache.get::<u8>("absent").await;
    let samples = parse(&cache.prometheus_text());
    assert_eq!(
        get(
            &samples,
            "cache_misses_total{cache=\"default\",template=\"-\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn label_values_are_escaped() {
    let cache = Cache::builder().build().unwrap();
    let odd = cache.named("a\"b\\c\nd");
    odd.set("k", 1u8, Duration::from_secs(60)).await;
    let text = cache.prometheus_text();
    assert!(
        text.contains(r#"cache_items{cache="a\"b\\c\nd"} 1"#),
        "{text}"
    );
    parse(&text);
}

/// The template a default key is labelled with has the key's shape: with
/// a `*` for each placeholder, it is a pattern that removes the function's
/// keys, so what the metrics show can be invalidated.
#[tokio::test]
async fn the_template_of_a_default_key_invalidates_its_keys() {
    let cache = Cache::builder().build().unwrap();
    cache
        .scope(async {
            profile(7, true).await;
            profile(8, false).await;
        })
        .await;
    let samples = parse(&cache.prometheus_text());
    let template = samples
        .keys()
        .find_map(|series| {
            let labels = series.strip_prefix("cache_misses_total{cache=\"default\",template=\"")?;
            let template = labels.strip_suffix("\"}")?;
            template.contains("::profile").then_some(template)
        })
        .expect("the misses of profile, under its template");
    assert_eq!(
        template,
        concat!(module_path!(), "::profile#:<id>:<detailed>")
    );

    let mut pattern = String::new();
    let mut in_placeholder = false;
    for c in template.chars() {
        match c {
            '<' => in_placeholder = true,
            '>' => {
                in_placeholder = false;
                pattern.push('*');
            }
            c if !in_placeholder => pattern.push(c),
            _ => {}
        }
    }
    assert_eq!(cache.invalidate(&pattern).await.unwrap(), 2, "{pattern}");
    assert_eq!(cache.stats().entries, 0);
    cache.scope(profile(7, true)).await;
    assert_eq!(cache.stats().loads, 3, "the removed key is loaded again");
}

/// Hooks that record which cache each miss came from.
#[derive(Default)]
struct Misses(Mutex<Vec<(String, String)>>);

impl Hooks for Misses {
    fn on_event(&self, _: &Event<'_>) {
        panic!("on_cache_event is overridden: on_event is not called");
    }
    fn on_cache_event(&self, cache: &str, event: &Event<'_>) {
        if let Event::Miss { template, .. } = event {
            self.0
                .lock()
                .unwrap()
                .push((cache.into(), (*template).into()));
        }
    }
}

#[tokio::test]
async fn hooks_are_told_which_cache_an_event_came_from() {
    let misses = Arc::new(Misses::default());
    let cache = Cache::builder().hooks(Arc::clone(&misses)).build().unwrap();
    cache
        .scope(async {
            user(1).await;
            team("acme", 1).await;
        })
        .await;
    assert_eq!(
        *misses.0.lock().unwrap(),
        [
            ("default".to_owned(), "user:<id>".to_owned()),
            ("teams".to_owned(), "team:<org>:<id>".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cache_reports_hits_by_tier_and_its_breaker() {
    let server = RedisServer::start();
    let build = || {
        Cache::builder()
            .backend(Backend::Hybrid)
            .redis_url(server.url())
            .key_prefix("metrics")
            .redis_timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    for cache in [&a, &b] {
        assert!(cache.wait_in_sync(Duration::from_secs(10)).await);
    }
    a.scope(user(1)).await;
    b.scope(user(1)).await; // from Redis
    b.scope(user(1)).await; // from process
    let samples = parse(&b.prometheus_text());
    let s = |series: &str| get(&samples, series);
    assert_eq!(
        s("cache_hits_total{cache=\"default\",template=\"user:<id>\",tier=\"l2\"}"),
        1.0
    );
    assert_eq!(
        s("cache_hits_total{cache=\"default\",template=\"user:<id>\",tier=\"l1\"}"),
        1.0
    );
    assert_eq!(
        s("cache_origin_calls_total{cache=\"default\",template=\"user:<id>\"}"),
        0.0
    );
    assert_eq!(
        s("cache_breaker_state{cache=\"default\",state=\"closed\"}"),
        1.0
    );
    assert_eq!(
        s("cache_breaker_state{cache=\"default\",state=\"open\"}"),
        0.0
    );
    assert_eq!(s("cache_errors_total{cache=\"default\",kind=\"l2\"}"), 0.0);
    let a_samples = parse(&a.prometheus_text());
    assert_eq!(
        get(&a_samples, "cache_l2_sets_total{cache=\"default\"}"),
        1.0
    );
}
