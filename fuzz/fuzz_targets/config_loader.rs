//! A schedule file's bytes, read as `pipecron check` reads one: decoded as UTF-8 (or reported), parsed, checked, each
//! diagnostic rendered, and each valid schedule asked for its next fire time. Must never panic, hang or blow memory.

#![no_main]

use std::path::Path;

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use pipecron::config::diag::{Reporter, Scope};
use pipecron::config::{self, yaml};

/// `${VAR}` references resolve to a short value, except `UNSET`, which is missing, and `EMPTY`, which is empty.
fn env(name: &str) -> Option<String> {
    match name {
        "UNSET" => None,
        "EMPTY" => Some(String::new()),
        _ => Some(format!("glptt-fuzz{name}0123456789")),
    }
}

fuzz_target!(|data: &[u8]| {
    // A directory that does not exist: a relative `token_file` or `ca_file` reads nothing of this machine.
    let file = Path::new("/nonexistent-pipecron-fuzz/schedules/fuzz.yaml");
    let mut diagnostics = Vec::new();
    let text = match yaml::decode(data) {
        Ok(text) => text,
        // What `config::load` reports for a file that is not UTF-8; rendering it must not panic either.
        Err(error) => {
            let _ = error.message.len();
            return;
        }
    };
    let now = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap();
    // With secrets (as `check` runs by default), and without them (`check --skip-secrets`) where that may differ:
    // for `${VAR}` references, `token_file` and `ca_file`, also when written with YAML's escapes.
    let skip_secrets_differs = text.contains(['$', '\\']) || text.contains("_file");
    let envs = [Some(&env as config::Env)].into_iter().chain(skip_secrets_differs.then_some(None));
    for env in envs {
        let mut rep = Reporter { file, scope: Scope::File, out: &mut diagnostics };
        let schedules = config::load_file(text, file, env, &mut rep);
        for schedule in &schedules {
            let _ = schedule.next_after(now);
        }
        for diagnostic in diagnostics.drain(..) {
            let _ = diagnostic.to_string();
        }
    }
});
