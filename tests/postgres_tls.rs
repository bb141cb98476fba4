//! TLS to PostgreSQL, end to end with the real binary: a cluster of the test's own that accepts only TLS over TCP,
//! with a certificate for `localhost` signed by a private CA, reached with each `sslmode`. `verify-full` checks the
//! chain and the name, `verify-ca` only the chain, `require` neither; `disable` is refused by the server; and a
//! failure's message shows the URL with its password masked.

mod common;

use std::path::Path;

use common::pg_cluster::PgCluster;
use common::pki::{Pki, pki};
use common::{Pipecron, Run};

/// Turns TLS on with `pki`'s certificate and lets clients in over TCP only with TLS; restarts the cluster.
fn serve_tls_only(cluster: &PgCluster, pki: &Pki) {
    let data = cluster.data_dir();
    cluster.write_owned_by_server(&data.join("server.crt"), pki.cert.as_bytes(), 0o600);
    cluster.write_owned_by_server(&data.join("server.key"), pki.key.as_bytes(), 0o600);
    cluster.append_conf("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nlog_connections = on");
    cluster.write_hba(
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 trust\n\
         hostssl all all ::1/128 trust\n",
    );
    cluster.stop();
    cluster.start_again();
}

/// `pipecron history --state URL`, with an empty schedules directory.
fn history(url: &str, dir: &Path) -> Run {
    let run = Pipecron::new().current_dir(dir).args(["history", "--state", url]).run();
    println!("--state {url}\n  exit {}, stderr: {}", run.status, run.stderr.trim_end());
    run
}

#[test]
fn each_sslmode_against_a_server_that_accepts_only_tls() {
    let Some(cluster) = PgCluster::start() else {
        println!("skipped: PostgreSQL is not installed");
        return;
    };
    let pki = pki();
    serve_tls_only(&cluster, &pki);
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca).expect("writes the CA");
    let (port, ca) = (cluster.port(), ca.display().to_string());
    let url = |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/pipecron?{query}");
    let mut failures = Vec::new();
    let mut expect = |case: &str, run: &Run, status: i32, needles: &[&str]| {
        if run.status != status {
            failures.push(format!("{case}: exit {} instead of {status}:\n{}", run.status, run.stderr));
        }
        for needle in needles {
            if !run.stderr.contains(needle) {
                failures.push(format!("{case}: stderr lacks {needle:?}:\n{}", run.stderr));
            }
        }
    };

    // 1. The chain leads to the CA given, and the name is the certificate's. The URL is shown as it was written.
    let run = history(&url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}")), dir.path());
    let shown = format!("no runs recorded in {}", url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}")));
    expect("verify-full, localhost", &run, 0, &[&shown]);

    // 2. The same server by its address: the certificate names only localhost.
    let run = history(&url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}")), dir.path());
    expect("verify-full, 127.0.0.1", &run, 1, &["certificate not valid for name", "127.0.0.1"]);

    // 3. verify-ca checks the chain and not the name.
    let run = history(&url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")), dir.path());
    expect("verify-ca, 127.0.0.1", &run, 0, &["no runs recorded in"]);

    // 4. Without sslrootcert the system's roots are used, and they do not know the private CA.
    let run = history(&url("localhost", "sslmode=verify-full"), dir.path());
    expect("verify-full, system roots", &run, 1, &["invalid peer certificate", "UnknownIssuer"]);

    // 5. require encrypts and checks nothing.
    let run = history(&url("localhost", "sslmode=require"), dir.path());
    expect("require", &run, 0, &["no runs recorded in"]);

    // 6. Without TLS the server refuses: pg_hba.conf has only hostssl lines.
    let shown = url("localhost", "sslmode=disable");
    let run = history(&shown, dir.path());
    expect("disable", &run, 1, &[&format!("the state database {shown}"), "no pg_hba.conf entry", "no encryption"]);

    // 7. A password in the URL is never shown, in the failure either.
    let secret = format!("postgres://postgres:hunter2@localhost:{port}/pipecron?sslmode=disable");
    let run = history(&secret, dir.path());
    let masked = format!("postgres://postgres:***@localhost:{port}/pipecron");
    expect("disable, with a password", &run, 1, &[&masked, "no pg_hba.conf entry"]);
    if run.stderr.contains("hunter2") || run.stdout.contains("hunter2") {
        failures.push(format!("the password is shown:\n{}", run.stderr));
    }

    // 8. The server saw pipecron's connections encrypted (log_connections).
    let log = cluster.server_log();
    let pipecron_connections: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("connection authorized") && line.contains("application_name=pipecron"))
        .collect();
    if pipecron_connections.is_empty() || pipecron_connections.iter().any(|line| !line.contains("SSL enabled")) {
        failures.push(format!("pipecron's connections were not all encrypted:\n{}", pipecron_connections.join("\n")));
    }

    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
