//! Integration tests: the real binary, the real RabbitMQ, an in-process fake Brevo.

mod support;

mod it {
    pub mod config;
    pub mod container;
    pub mod deploy;
    pub mod drain;
    pub mod failures;
    pub mod generated;
    pub mod legacy;
    pub mod maintenance;
    pub mod metrics;
    pub mod monitoring;
    pub mod output;
    pub mod policy;
    pub mod publish;
    pub mod scale;
    pub mod security;
}
