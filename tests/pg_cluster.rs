//! The throw-away PostgreSQL cluster of `common::pg_cluster` itself: it answers, stops for real, and comes back.

mod common;

use std::net::TcpStream;

use common::pg_cluster::PgCluster;

#[test]
fn a_cluster_answers_stops_and_starts_again() {
    let Some(cluster) = PgCluster::start() else {
        println!("skipped: PostgreSQL is not installed");
        return;
    };
    assert_eq!(cluster.psql("SELECT 1"), "1");
    assert!(cluster.url().ends_with(&format!(":{}/pipecron?sslmode=disable", cluster.port())), "{}", cluster.url());

    cluster.stop();
    assert!(TcpStream::connect(("127.0.0.1", cluster.port())).is_err(), "the stopped cluster still listens");

    cluster.start_again();
    assert_eq!(cluster.psql("SELECT 2"), "2");
}
