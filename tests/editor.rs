//! `pipecron schema` and `pipecron completions` through the real binary.

mod common;

use common::Pipecron;

#[test]
fn schema_is_json_schema_for_the_schedule_file() {
    let run = Pipecron::new().args(["schema"]).run().success();
    let schema: serde_json::Value = serde_json::from_str(&run.stdout).expect("valid JSON");
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(schema["properties"]["schedules"].is_object(), "{schema}");
    let keys = schema["$defs"]["Defaults"]["properties"].as_object().expect("properties");
    assert!(keys.contains_key("ref") && keys.contains_key("token_file") && keys.contains_key("catch_up"));
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for (shell, marker) in [("bash", "_pipecron()"), ("zsh", "#compdef pipecron"), ("fish", "complete -c pipecron")] {
        let run = Pipecron::new().args(["completions", shell]).run().success();
        assert!(run.stdout.contains(marker), "{shell}: {}", &run.stdout[..run.stdout.len().min(200)]);
        assert!(run.stdout.contains("run-now"), "{shell} completes the commands");
    }
    let unknown = Pipecron::new().args(["completions", "tcsh"]).run();
    assert_eq!(unknown.status, 2);
}
