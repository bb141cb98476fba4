//! A throw-away PostgreSQL cluster of a test's own, for end-to-end tests that stop and restart PostgreSQL under a
//! running daemon. The shared server on 127.0.0.1:5432 serves every other test and must never go down, so each of
//! these tests gets a fresh cluster: data and Unix socket in a temporary directory, TCP on a free loopback port,
//! trust authentication, no fsync. `initdb` refuses to run as root, so as root the binaries run as `postgres`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a start or a stop may take.
const TIMEOUT_SECONDS: u64 = 30;

pub struct PgCluster {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    as_root: bool,
}

impl PgCluster {
    /// Starts a new cluster, or returns None when PostgreSQL's binaries are missing; under CI=true a missing
    /// PostgreSQL panics instead, so that the tests needing it never pass quietly.
    pub fn start() -> Option<PgCluster> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PostgreSQL's initdb is missing (no pg_config --bindir, /usr/lib/postgresql/*/bin or PATH); \
                 .ci/run installs the postgresql package"
            );
            return None;
        };
        let dir = tempfile::Builder::new().prefix("pipecron-pg-").tempdir().expect("a temporary directory");
        let as_root = fs::metadata(dir.path()).expect("the temporary directory exists").uid() == 0;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        let cluster = PgCluster { dir, port, bin, as_root };
        if as_root {
            // The directory is root's and mode 0700: the postgres user could neither create the data directory nor
            // the socket in it.
            cluster.run("chown", Command::new("chown").arg("postgres:").arg(cluster.dir.path()));
        }
        let data = cluster.data();
        cluster.run(
            "initdb",
            cluster
                .command("initdb")
                .args(["--auth=trust", "-U", "postgres", "--encoding=UTF8", "--locale=C", "--no-sync", "-D"])
                .arg(&data),
        );
        let settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            cluster.dir.path().display()
        );
        OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut conf| conf.write_all(settings.as_bytes()))
            .expect("postgresql.conf takes the cluster's settings");
        cluster.start_again();
        let port_arg = port.to_string();
        let createdb = ["-h", "127.0.0.1", "-p", &port_arg, "-U", "postgres", "pipecron"];
        cluster.run("createdb", cluster.command("createdb").args(createdb));
        Some(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/pipecron?sslmode=disable", self.port)
    }

    /// Stops the server with `pg_ctl stop -m fast`, waiting until it is down.
    pub fn stop(&self) {
        self.run("pg_ctl stop", self.pg_ctl().args(["stop", "-m", "fast"]));
    }

    /// Starts the server again on the same port and data directory, waiting until it accepts connections.
    pub fn start_again(&self) {
        let log = self.dir.path().join("postgres.log");
        self.run("pg_ctl start", self.pg_ctl().arg("start").arg("-l").arg(&log));
        let deadline = Instant::now() + Duration::from_secs(TIMEOUT_SECONDS);
        let port = self.port.to_string();
        while !self
            .command("pg_isready")
            .args(["-q", "-h", "127.0.0.1", "-p", &port])
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "PostgreSQL is not ready; its log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs SQL with psql against the pipecron database and returns what it printed, unaligned and trimmed.
    pub fn psql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        let mut psql = self.command("psql");
        psql.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
            .args(["-d", "pipecron", "-c", sql]);
        self.run(&format!("psql -c {sql:?}"), &mut psql).trim().to_owned()
    }

    /// The data directory, where postgresql.conf, pg_hba.conf and the server's own files live.
    pub fn data_dir(&self) -> PathBuf {
        self.data()
    }

    /// Appends settings to postgresql.conf; they take effect at the next `start_again`.
    pub fn append_conf(&self, settings: &str) {
        OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .and_then(|mut conf| conf.write_all(format!("\n{settings}\n").as_bytes()))
            .expect("postgresql.conf takes more settings");
    }

    /// Replaces pg_hba.conf; it takes effect at the next `start_again`.
    pub fn write_hba(&self, rules: &str) {
        fs::write(self.data().join("pg_hba.conf"), rules).expect("pg_hba.conf is written");
    }

    /// Writes a file with `mode` that the server's user owns (the `postgres` user when the tests run as root), as
    /// PostgreSQL wants of its private key.
    pub fn write_owned_by_server(&self, path: &Path, bytes: &[u8], mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::write(path, bytes).unwrap_or_else(|e| panic!("{} is written: {e}", path.display()));
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("{} takes mode {mode:o}: {e}", path.display()));
        if self.as_root {
            self.run("chown", Command::new("chown").arg("postgres:").arg(path));
        }
    }

    /// What the server has logged so far.
    pub fn server_log(&self) -> String {
        self.log()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn pg_ctl(&self) -> Command {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl.args(["-w", "-t", &TIMEOUT_SECONDS.to_string(), "-D"]).arg(self.data());
        pg_ctl
    }

    /// One of PostgreSQL's binaries, run as `postgres` when the tests run as root, from the temporary directory (the
    /// postgres user may not be allowed into the test's own working directory).
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = if self.as_root {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", "postgres", "--"]).arg(program);
            runuser
        } else {
            Command::new(program)
        };
        command.current_dir(self.dir.path());
        command
    }

    /// Runs a command to completion; panics with its output and the server's log if it fails.
    fn run(&self, what: &str, command: &mut Command) -> String {
        let output = command.output().unwrap_or_else(|e| panic!("{what} does not run: {e}"));
        assert!(
            output.status.success(),
            "{what} failed ({}):\n{}{}\nserver log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Errors ignored: the server may be stopped already. The temporary directory goes with `self.dir`.
        let _ = self.pg_ctl().args(["stop", "-m", "immediate"]).output();
    }
}

/// PostgreSQL's bin directory: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin, else initdb's
/// directory on PATH (symlinks resolved, so that psql and pg_isready are found next to it).
fn bin_dir() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|dir| has_initdb(dir)) {
        return Some(dir);
    }
    let newest = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<u32>().ok()?, entry.path().join("bin"))))
        .filter(|(_, dir)| has_initdb(dir))
        .max();
    if let Some((_, dir)) = newest {
        return Some(dir);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("initdb"))
        .find(|initdb| initdb.is_file())
        .and_then(|initdb| Some(fs::canonicalize(initdb).ok()?.parent()?.to_path_buf()))
}
