//! pipecron: schedules-as-code for GitLab pipeline triggers.
pub mod config;
pub mod cron;
pub mod suggest;
