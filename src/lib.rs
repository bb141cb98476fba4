//! pipecron: schedules-as-code for GitLab pipeline triggers.
//!
//! Data flows one way: `config` reads schedule files into `schedule::Schedule`s, whose `cron` expressions give
//! the slots to fire. The binary (`cli`) is a thin layer over these.

pub mod batch;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cron;
pub mod daemon;
pub mod duration;
pub mod events;
pub mod follow;
pub mod import;
pub mod metrics;
pub mod notify;
pub mod page;
pub mod quote;
pub mod reload;
pub mod retention;
pub mod run;
pub mod run_now;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod status;
pub mod store;
pub mod suggest;
pub mod trigger;
