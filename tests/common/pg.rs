//! A fresh database on the shared PostgreSQL at 127.0.0.1:5432 (trust auth), dropped when the test ends. For
//! tests that only need a database; tests that stop or restart PostgreSQL run their own cluster (`pg_cluster`).

use std::process::Command;

pub struct TempDatabase {
    name: String,
}

impl TempDatabase {
    /// Creates the database; `None` if the shared server is not there, except under CI, where that fails the test.
    pub fn create() -> Option<TempDatabase> {
        let name = format!("pipecron_t_{:016x}", rand_u64());
        match admin(&format!("CREATE DATABASE {name}")) {
            Ok(_) => Some(TempDatabase { name }),
            Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("PostgreSQL at 127.0.0.1:5432 is needed under CI: {why}")
            }
            Err(why) => {
                eprintln!("skipped: no PostgreSQL at 127.0.0.1:5432 ({why})");
                None
            }
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}?sslmode=disable", self.name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs SQL in this database, and returns what it printed.
    pub fn psql(&self, sql: &str) -> String {
        psql(&self.name, sql).expect("the SQL runs")
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        // For the leak scan: everything pipecron wrote into it.
        let dump = Command::new("pg_dump")
            .args(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", &self.name])
            .output();
        if let Ok(dump) = dump {
            super::artifacts::keep("pgdump", &dump.stdout);
        }
        let _ = admin(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn admin(sql: &str) -> Result<String, String> {
    psql("test", sql)
}

fn psql(database: &str, sql: &str) -> Result<String, String> {
    let output = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    match output.status.success() {
        true => Ok(String::from_utf8_lossy(&output.stdout).trim().to_string()),
        false => Err(String::from_utf8_lossy(&output.stderr).trim().to_string()),
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.finish()
}
