//! Integration tests: the real binary, the real RabbitMQ, an in-process fake Brevo.

mod support;

mod it {
    pub mod config;
    pub mod drain;
    pub mod failures;
    pub mod legacy;
    pub mod maintenance;
    pub mod policy;
    pub mod publish;
}
