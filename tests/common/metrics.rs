//! A scrape of `/metrics`, parsed by a Prometheus text-format parser, and linted by promtool.

use std::collections::BTreeMap;

/// The samples of a scrape, parsed by a Prometheus text-format parser.
pub fn prometheus(text: &str) -> Vec<prometheus_parse::Sample> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("the Prometheus text format").samples
}

/// The value of the sample named `name` with exactly `labels`.
pub fn value(samples: &[prometheus_parse::Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    samples
        .iter()
        .find(|s| {
            s.metric == name
                && s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>() == wanted
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// `promtool check metrics` on a scrape: Prometheus's own lint of names, units and help texts. Without promtool
/// the check is skipped, except under CI, where `.ci/run` installs it.
pub fn promtool_lint(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(_) if std::env::var_os("CI").is_none() => return eprintln!("promtool is missing: lint skipped"),
        Err(error) => panic!("promtool is missing under CI: {error}"),
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("writes");
    let out = child.wait_with_output().expect("promtool runs");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}");
}
