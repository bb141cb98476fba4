use super::*;

fn one(line: &str) -> Imported {
    let import = import(line);
    assert!(import.skipped.is_empty(), "{:?}", import.skipped);
    import.schedules.into_iter().next().expect("one schedule")
}

/// Why the one line of `crontab` was skipped.
fn refused(crontab: &str) -> Skipped {
    let import = import(crontab);
    assert!(import.schedules.is_empty(), "{:?}", import.schedules);
    assert_eq!(import.skipped.len(), 1, "{:?}", import.skipped);
    import.skipped.into_iter().next().expect("one line")
}

const URL: &str = "https://gitlab.example.com/api/v4/projects/9/trigger/pipeline";

/// The output as YAML: well-formed, with nothing but `schedules` at the top, whatever the crontab held.
fn parsed(import: &Import) -> serde_json::Value {
    let yaml = to_yaml(import);
    let value: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{e}:\n{yaml}"));
    let keys: Vec<&String> = value.as_object().expect("a mapping").keys().collect();
    assert_eq!(keys, ["schedules"], "{yaml}");
    value
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
fn fields_read_as_the_server_reads_what_curl_sends() {
    let git_ref = |fields: &str| one(&format!("0 1 * * * curl -F token=T {fields} {URL}")).git_ref;
    let data_ref = |fields: &str| one(&format!("0 1 * * * curl -d token=T {fields} {URL}")).git_ref;
    // A -d body is form-encoded: `+` is a space, `%XX` a byte.
    assert_eq!(data_ref("-d ref=a+b"), "a b");
    assert_eq!(data_ref("--data ref=a%2Bb"), "a+b");
    assert_eq!(data_ref("--data-raw 'ref=a+b'"), "a b");
    assert_eq!(data_ref("--data-binary ref=%C3%A9t%C3%A9"), "été");
    // --data-urlencode encodes the value, so it arrives as written; the name is sent as it is.
    assert_eq!(data_ref("--data-urlencode ref=a+b%20c"), "a+b%20c");
    assert_eq!(data_ref("--data-urlencode 're%66=x y'"), "x y");
    // A multipart field is sent as written.
    assert_eq!(git_ref("-F ref=a+b"), "a+b");
    assert_eq!(git_ref("-F ref=a%20b"), "a%20b");
    assert_eq!(git_ref("--form-string 'ref=a+b;type=x'"), "a+b;type=x");
    // In a path, `%XX` is decoded and `+` is itself.
    let hook = one(
        "0 1 * * * curl -X POST 'https://gitlab.example.com/api/v4/projects/9/ref/a+b%2Fc/trigger/pipeline?token=T'",
    );
    assert_eq!(hook.git_ref, "a+b/c");
    // In a query string, `+` is a space.
    assert_eq!(one(&format!("0 1 * * * curl -X POST '{URL}?token=T&ref=a+b'")).git_ref, "a b");
    // The body wins over the query string; several -d join with `&`.
    let both = one(&format!("0 1 * * * curl -d token=T -d ref=body -d 'variables[A]=1' '{URL}?ref=query'"));
    assert_eq!((both.git_ref.as_str(), both.variables["A"].as_str()), ("body", "1"));
    let urlencoded =
        one(&format!("0 1 * * * curl -d token=T -d ref=main --data-urlencode 'variables[NOTE]=50% off & more' {URL}"));
    assert_eq!(urlencoded.variables["NOTE"], "50% off & more");
}

#[test]
fn cron_escapes_and_curl_option_forms() {
    // cron hands `\%` to the shell as `%`.
    let escaped = one(&format!("0 1 * * * curl -d 'token=T&ref=a\\%2Bb' {URL}"));
    assert_eq!(escaped.git_ref, "a+b");
    // Grouped short flags, attached values, and the shell's redirections and pipes after the call.
    let grouped = one(&format!("0 1 * * * curl -sSfo /dev/null -XPOST -Ftoken=T -Fref=main {URL} >/dev/null 2>&1"));
    assert_eq!(grouped.git_ref, "main");
    let long = one(&format!("0 1 * * * curl --silent --form=token=T --form=ref=main --url {URL} | logger"));
    assert_eq!(long.git_ref, "main");
}

#[test]
fn calls_that_cannot_be_reproduced_say_why() {
    let why = |fields: &str| refused(&format!("0 1 * * * curl {fields} {URL}")).why;
    assert!(why("-d token=T -F ref=main").contains("both -d and -F"), "{}", why("-d token=T -F ref=main"));
    assert!(why("-F token=T -d @body.txt").contains("reads the body from a file"));
    assert!(why("-F token=T -F ref=@ref.txt").contains("reads the value from a file"));
    assert!(why("-F token=T -F ref=<ref.txt").contains("reads the value from a file"));
    assert!(why("-d token=T --data-urlencode ref@ref.txt").contains("reads the value from a file"));
    assert!(why("-F token=T -F 'ref=main;type=text/plain'").contains("--form-string"));
    assert!(why("-G -d token=T -d ref=main").contains("GET"));
    assert!(why("-sG -d token=T -d ref=main").contains("GET"));
    assert!(why("--json '{}'").contains("JSON"));
    assert!(why("-F token=T -F ref").contains("has no '='"));
    assert!(why("-F token=T -F ref=main https://other.example.com").contains("two URLs"));
    assert!(why("-F token=T -F 'variables[a b]=1' -F ref=main").contains("not a valid variable name"));
    assert!(why("-F token=T -F 'variables[PIPECRON_SLOT]=1' -F ref=main").contains("pipecron's own"));
    assert!(why("-F token=T -F 'inputs[x]=1' -F ref=main").contains("inputs"));
    assert!(why("-F ref=main -d ''").contains("both -d and -F"));
    assert!(why("-F token= -F ref=main").contains("no token="));
    assert!(why("-d 'token=a%0Ab' -d ref=main").contains("control character"));
    assert!(why("-F token=T -F ref=main -H").contains("curl is given no URL"), "the URL is -H's value");
    assert!(refused("0 1 * * * curl -F token=T -F ref=main -H").why.contains("-H has no value"));
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
    assert_eq!(import.skipped[0].line, 2);
}

#[test]
fn a_commented_out_line_does_not_swallow_the_next() {
    let crontab = format!("# 0 1 * * * old-job \\\n0 2 * * * curl -F token=T -F ref=main {URL}\r\n");
    let import = import(crontab);
    assert_eq!(import.schedules.len(), 1, "{:?}", import.skipped);
    assert_eq!(import.schedules[0].cron, "0 2 * * *");
}

#[test]
fn untranslatable_lines_are_kept_as_comments_without_their_token() {
    let crontab = "0 * * * * /usr/local/bin/backup.sh\n5 * * * * curl https://example.com/ping?token=glptt-abcdef123456\n* * *\nGITLAB_TOKEN=glpat-0123456789abcdef\n0 * * * * curl -H 'PRIVATE-TOKEN: glpat-fedcba9876543210' https://example.com/x\n";
    let import = import(crontab);
    assert!(import.schedules.is_empty());
    let lines: Vec<usize> = import.skipped.iter().map(|s| s.line).collect();
    assert_eq!(lines, [1, 2, 3, 4, 5]);
    let yaml = to_yaml(&import);
    assert!(yaml.contains("# line 1, not imported: no curl command"), "{yaml}");
    assert!(yaml.contains("#   0 * * * * /usr/local/bin/backup.sh\n"), "{yaml}");
    assert!(!yaml.contains("abcdef123456"), "{yaml}");
    assert!(yaml.contains("token=glptt-abcd…"), "{yaml}");
    assert!(!yaml.contains("0123456789abcdef") && !yaml.contains("fedcba9876543210"), "{yaml}");
    assert!(yaml.contains("# line 4, not imported: GITLAB_TOKEN= does not apply"), "{yaml}");
    parsed(&import);
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
    // Names that make the same variable keep their own tokens.
    let alike = super::import(format!(
        "0 1 * * * curl -F token=A -F ref=a.b {URL}\n0 2 * * * curl -F token=B -F ref=a-b {URL}\n"
    ));
    let vars: Vec<&str> = alike.schedules.iter().map(|s| s.token_var.as_str()).collect();
    assert_eq!(vars, ["TRIGGER_TOKEN_9_A_B", "TRIGGER_TOKEN_9_A_B_2"]);
    assert_eq!(to_env(&alike), "TRIGGER_TOKEN_9_A_B=A\nTRIGGER_TOKEN_9_A_B_2=B\n");
}

#[test]
fn many_alike_lines_are_named_in_one_pass() {
    let line = format!("0 1 * * * curl -F token=T -F ref=main {URL}\n");
    let started = std::time::Instant::now();
    let import = import(line.repeat(20_000));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(import.schedules.len(), 20_000);
    assert_eq!(
        (import.schedules[1].name.as_str(), import.schedules[19_999].name.as_str()),
        ("9-main-2", "9-main-20000")
    );
}

#[test]
fn unbalanced_quotes_say_which_quote_on_which_line() {
    let crontab =
        format!("0 1 * * * curl -F token=T -F ref=main {URL}\n0 2 * * * curl -F 'token=T -F ref=main {URL}\n");
    let import = import(crontab);
    assert_eq!(import.schedules.len(), 1);
    let skipped = &import.skipped[0];
    assert_eq!(skipped.line, 2);
    assert!(
        skipped.why.starts_with("the command's quoting is unbalanced: the ' before 'token=T… -F ref=main"),
        "{}",
        skipped.why
    );
    assert!(skipped.why.len() < 200, "{}", skipped.why);
    let escaped = refused(r#"0 2 * * * curl -F "token=\"T" -F 'ref=it"s' -d "x"#);
    assert!(escaped.why.contains(r#"the " before 'x'"#), "{}", escaped.why);
    assert!(refused("0 2 * * * curl -F token=T \\ ").why.contains("lone \\"));
}

#[test]
fn long_lines_are_refused_and_shown_short() {
    let long = format!("0 1 * * * curl -F token=T -F ref=main -F 'variables[A]={}' {URL}", "x".repeat(100 * 1024));
    let skipped = refused(&format!("\n{long}\n"));
    assert_eq!(skipped.line, 2);
    assert!(skipped.why.contains(&format!("{} bytes long", long.len())), "{}", skipped.why);
    assert!(skipped.text.chars().count() < SHOWN + 30, "{}", skipped.text);
    // Masking a long line full of tokens takes a few passes over it, not one per token.
    let started = std::time::Instant::now();
    let tokens = refused(&format!("0 1 * * * curl {}", "token=glptt-0123456789abcdef&".repeat(4000)));
    assert!(tokens.text.starts_with("0 1 * * * curl token=glptt-0123…&token=glptt-0123…&"), "{}", tokens.text);
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    // A value in a message is shortened too.
    let url = format!("https://{}.example.com/", "h".repeat(5000));
    let message = refused(&format!("0 1 * * * curl -F token=T {url} https://b.example.com")).why;
    assert!(message.len() < 300, "{message}");
}

#[test]
fn lines_that_are_not_utf8_are_refused_and_the_rest_imported() {
    let mut crontab = format!("0 1 * * * curl -F token=T -F ref=main {URL}\n").into_bytes();
    crontab.extend_from_slice(b"0 2 * * * curl -F token=T -F ref=\xff\xfe\x00\x1b[31m ");
    crontab.extend_from_slice(URL.as_bytes());
    crontab.extend_from_slice(b"\n  \x00\x01\x02\r\x7f binary\x80\n# a comment \xff is no concern\n");
    let import = import(&crontab);
    assert_eq!(import.schedules.len(), 1);
    let lines: Vec<(usize, &str)> = import.skipped.iter().map(|s| (s.line, s.why.as_str())).collect();
    assert_eq!(
        lines,
        [(2, "the line is not UTF-8 text (byte 34 is not)"), (3, "the line is not UTF-8 text (byte 15 is not)")]
    );
    let yaml = to_yaml(&import);
    assert!(!yaml.chars().any(|c| c.is_control() && c != '\n'), "{yaml:?}");
    assert!(yaml.contains("\\u{1b}[31m"), "{yaml}");
    parsed(&import);
}

#[test]
fn five_hundred_form_fields_import_and_the_output_grows_with_them_only() {
    let fields: String = (0..498).map(|i| format!("-F variables[V{i}]=value-{i} ")).collect();
    let line = format!("0 1 * * * curl -F token=T -F ref=main {fields}{URL}");
    let import = import(&line);
    assert_eq!(import.schedules[0].variables.len(), 498);
    assert_eq!(import.schedules[0].variables["V497"], "value-497");
    let yaml = to_yaml(&import);
    assert!(yaml.len() < 2 * line.len(), "{} bytes of YAML for a line of {}", yaml.len(), line.len());
    parsed(&import);
    // The same field 500 times is one field.
    let same: String = (0..500).map(|i| format!("-F ref=r{i} ")).collect();
    assert_eq!(one(&format!("0 1 * * * curl -F token=T {same}{URL}")).git_ref, "r499");
}

#[test]
fn any_value_is_written_as_yaml_that_reads_back_the_same() {
    let value = "a\"b\\c\nd\te\r\u{1b}\u{85}\u{2028}\u{7f}${HOME}é";
    let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
    let import = import(format!("0 1 * * * curl -d token=T -d ref=main -d 'variables[V]={encoded}' {URL}"));
    let yaml = parsed(&import);
    let read = yaml["schedules"]["9-main"]["variables"]["V"].as_str().expect("a string");
    assert_eq!(read, value.replace("${", "$${"), "`${{` is written `$${{`, which interpolation reads as `${{`");
}

#[test]
fn masking_covers_every_token_form() {
    assert_eq!(mask_tokens("a?token=secret1&private_token=secret2 b"), "a?token=secr…&private_token=secr… b");
    assert_eq!(mask_tokens("TOKEN=glptt-0123456789"), "TOKEN=glptt-0123…");
    assert_eq!(mask_tokens("x glpat-abcdefgh y"), "x glpat-abcd… y", "GitLab's prefixes are kept");
    assert_eq!(mask_tokens("token= é token="), "token= é token=");
}
