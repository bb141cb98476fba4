//! A crontab's bytes, imported as `pipecron import-crontab` does. Must never panic; the YAML it writes must be one
//! well-formed YAML document whatever the crontab held, and must load with the config loader without a panic.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pipecron::config::diag::{Reporter, Scope};
use pipecron::config::{self, yaml};
use pipecron::import;

fuzz_target!(|data: &[u8]| {
    let imported = import::import(data);
    let text = import::to_yaml(&imported);
    let _ = import::to_env(&imported);
    if let Err(error) = yaml::parse(&text) {
        panic!("the imported YAML does not parse: {}: {}\n{text}", error.pos, error.message);
    }
    // As `check` reads it, with the tokens it names set (from the .env file the import writes).
    let env = |name: &str| imported.tokens.get(name).cloned().or_else(|| Some("glptt-fuzz0123456789abcdef".into()));
    let file = Path::new("/nonexistent-pipecron-fuzz/schedules/imported.yaml");
    let mut diagnostics = Vec::new();
    for env in [None, Some(&env as config::Env)] {
        let mut rep = Reporter { file, scope: Scope::File, out: &mut diagnostics };
        let _ = config::load_file(&text, file, env, &mut rep);
    }
    for diagnostic in &diagnostics {
        let _ = diagnostic.to_string();
    }
});
