//! Replicas sharing a PostgreSQL store: lateness with one and with three, and a burst across three, each on a fresh
//! database that is dropped afterwards.

use std::process::{Command, Stdio};

use crate::daemon::Setup;
use crate::report::Report;
use crate::scenarios;
use crate::subject::Who;

/// A database of its own on the PostgreSQL server, dropped (with whatever is still connected) when done.
struct Database {
    name: String,
    /// For the replicas' `--state`.
    url: String,
}

impl Database {
    /// The URL psql connects to for creating and dropping databases.
    fn admin() -> String {
        std::env::var("PIPECRON_BENCH_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    fn psql(sql: &str) -> Result<(), String> {
        let output = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &Self::admin(), "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        match output.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&output.stderr).trim().to_string()),
        }
    }

    fn create(what: &str) -> Result<Database, String> {
        let name = format!("pipecron_bench_{what}_{}", std::process::id());
        Self::psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        Self::psql(&format!("CREATE DATABASE {name}"))?;
        let admin = Self::admin();
        let server = admin.split('?').next().and_then(|a| a.rsplit_once('/')).map_or(admin.as_str(), |(s, _)| s);
        Ok(Database { url: format!("{server}/{name}?sslmode=disable"), name })
    }

    /// `replicas` daemons on this database.
    fn setup(&self, replicas: usize) -> Setup {
        Setup { replicas, extra: vec!["--state".into(), self.url.clone()], pinned: false }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(error) = Self::psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
            println!("  cannot drop {}: {error}", self.name);
        }
    }
}

fn database(what: &str) -> Option<Database> {
    Database::create(what).inspect_err(|error| println!("postgres: skipped, no database to use: {error}")).ok()
}

pub fn postgres(report: &mut Report) {
    for (replicas, n, goal) in [(1, 1, 5.0), (3, 100, 15.0)] {
        let Some(db) = database(&format!("lateness{n}")) else { return };
        let Some(l) = scenarios::lateness(Who::Pipecron, n, if n == 1 { 30 } else { 20 }, &db.setup(replicas)) else {
            return;
        };
        let (replicas_s, schedules_s) = (if replicas == 1 { "" } else { "s" }, if n == 1 { "" } else { "s" });
        let measure =
            format!("PostgreSQL, {replicas} replica{replicas_s}, {n} schedule{schedules_s} every second: lateness p99");
        let met = crate::verdict(l.p99 <= goal);
        println!(
            "{measure}: {:.2} ms, p50 {:.2} ms, max {:.2} ms, {} requests, {} duplicates; goal ≤ {goal} ms: {met}",
            l.p99, l.p50, l.max, l.requests, l.duplicates
        );
        report.set(
            &measure,
            &format!("≤ {goal} ms"),
            Who::Pipecron,
            format!("{:.2} ms, p50 {:.2} ms", l.p99, l.p50),
            None,
        );
    }
    let Some(db) = database("burst") else { return };
    let Some(b) = scenarios::burst(Who::Pipecron, 10_000, &db.setup(3)) else { return };
    let measure = "PostgreSQL, 3 replicas, 10,000 slots due in one second";
    let met = crate::verdict(b.arrived == b.n && b.duplicates == 0 && b.last_s <= 2.0);
    println!(
        "{measure}: {} of {} arrived, {} duplicates, the last {:.3} s after the slot, {:.2} CPU-s; goal all within 2 s, \
         each once: {met}",
        b.arrived, b.n, b.duplicates, b.last_s, b.cpu
    );
    let text = format!("{} of {}, {} duplicates, the last after {:.2} s", b.arrived, b.n, b.duplicates, b.last_s);
    report.set(measure, "all within 2 s, each once", Who::Pipecron, text, None);
}
