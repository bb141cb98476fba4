use super::*;

fn one(line: &str) -> Imported {
    let import = import(line);
    assert!(import.skipped.is_empty(), "{:?}", import.skipped);
    import.schedules.into_iter().next().expect("one schedule")
}

#[test]
fn the_seed_lines_import() {
    let v3 = one(
        "30 0 * * * curl --request POST --form token=TOKEN --form ref=master https://gitlab.example.com/api/v3/projects/9/trigger/builds",
    );
    assert_eq!(
        (v3.cron.as_str(), v3.gitlab.as_str(), v3.project.as_str(), v3.git_ref.as_str(), v3.v3),
        ("30 0 * * *", "https://gitlab.example.com", "9", "master", true)
    );
    let short = one(
        "30 0 * * * curl -X POST -F token=TOKEN -F ref=master https://gitlab.example.com/api/v3/projects/9/trigger/builds",
    );
    assert_eq!(short.git_ref, "master");
    let v4 = one(
        "30 0 * * * curl --request POST --form token=TOKEN --form ref=master https://gitlab.example.com/api/v4/projects/9/trigger/pipeline",
    );
    assert!(!v4.v3);
    assert_eq!(v4.name, "9-master");
    assert_eq!(v4.token_var, "TRIGGER_TOKEN_9_MASTER");
}

#[test]
fn query_string_webhook_form_and_variables() {
    let query = one(
        r#"0 6 * * 1 curl --request POST "https://gitlab.example.com/api/v4/projects/9/trigger/pipeline?token=T1&ref=main""#,
    );
    assert_eq!(query.git_ref, "main");
    let hook = one(
        "0 6 * * 1 curl -X POST 'https://gitlab.example.com/api/v4/projects/9/ref/feature%2Fx/trigger/pipeline?token=T2'",
    );
    assert_eq!(hook.git_ref, "feature/x");
    let vars = one(
        r#"0 1 * * * curl -X POST -F token=T -F ref=main -F "variables[UPLOAD_TO_S3]=true" --form 'variables[NOTE]=a & b' https://gitlab.example.com/api/v4/projects/9/trigger/pipeline"#,
    );
    assert_eq!(vars.variables.get("UPLOAD_TO_S3").map(String::as_str), Some("true"));
    assert_eq!(vars.variables.get("NOTE").map(String::as_str), Some("a & b"));
    let data = one(
        "0 1 * * * curl -d 'token=T&ref=main&variables%5BA%5D=1%202' https://gitlab.example.com/api/v4/projects/9/trigger/pipeline",
    );
    assert_eq!(data.variables.get("A").map(String::as_str), Some("1 2"));
}

#[test]
fn continuations_paths_time_zones_and_shell_variables() {
    let crontab = "CRON_TZ=Europe/Berlin\nMAILTO=ops@example.com\n30 0 * * * /usr/bin/curl --request POST \\\n  --form token=$NIGHTLY_TOKEN \\\n  --form ref=master \\\n  https://gitlab.example.com/gitlab/api/v4/projects/group%2Fsub%2Fproject/trigger/pipeline\n";
    let import = import(crontab);
    let s = &import.schedules[0];
    assert_eq!(s.timezone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(s.gitlab, "https://gitlab.example.com/gitlab");
    assert_eq!(s.project, "group/sub/project");
    assert_eq!(s.name, "group-sub-project-master");
    assert_eq!(s.token_var, "NIGHTLY_TOKEN");
    assert!(import.tokens.is_empty(), "a shell variable is not a token value");
    assert_eq!(import.skipped.len(), 1, "MAILTO is kept as a comment: {:?}", import.skipped);
}

#[test]
fn untranslatable_lines_are_kept_as_comments_without_their_token() {
    let crontab =
        "0 * * * * /usr/local/bin/backup.sh\n5 * * * * curl https://example.com/ping?token=glptt-abcdef123456\n* * *\n";
    let import = import(crontab);
    assert!(import.schedules.is_empty());
    assert_eq!(import.skipped.len(), 3);
    let yaml = to_yaml(&import);
    assert!(yaml.contains("# not imported (no curl command"), "{yaml}");
    assert!(!yaml.contains("abcdef123456"), "{yaml}");
    assert!(yaml.contains("token=glptt-abcd…"), "{yaml}");
}

#[test]
fn tokens_go_to_the_env_file_only() {
    let crontab = "30 0 * * * curl -F token=glptt-0123456789abcdef -F ref=master https://gitlab.example.com/api/v4/projects/9/trigger/pipeline\n\
                   0 1 * * * curl -F token=glptt-0123456789abcdef -F ref=main https://gitlab.example.com/api/v4/projects/9/trigger/pipeline\n";
    let import = import(crontab);
    let yaml = to_yaml(&import);
    assert!(!yaml.contains("0123456789abcdef"), "{yaml}");
    assert!(yaml.contains("token: ${TRIGGER_TOKEN_9_MASTER}"), "{yaml}");
    assert_eq!(import.schedules[1].token_var, "TRIGGER_TOKEN_9_MASTER", "the same token, the same variable");
    assert_eq!(to_env(&import), "TRIGGER_TOKEN_9_MASTER=glptt-0123456789abcdef\n");
}
