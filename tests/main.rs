//! Integration tests: the real binary, the real RabbitMQ, an in-process fake Brevo.

mod support;

mod it {
    pub mod alerting;
    pub mod brevo_contract;
    pub mod completions;
    pub mod config;
    pub mod container;
    pub mod demo;
    pub mod deploy;
    pub mod deploy_readme;
    pub mod docs_links;
    pub mod doctor;
    pub mod drain;
    pub mod events;
    pub mod failures_brevo;
    pub mod failures_broker;
    pub mod failures_census;
    pub mod failures_interrupts;
    pub mod failures_mail;
    pub mod failures_secrets;
    pub mod firsthour;
    pub mod generated;
    pub mod legacy;
    pub mod maintenance;
    pub mod maybe_sent;
    pub mod messages;
    pub mod metrics;
    pub mod monitoring;
    pub mod output;
    pub mod plain_words;
    pub mod poison;
    pub mod policy;
    pub mod publish;
    pub mod scale;
    pub mod security;
    pub mod state_tls;
    pub mod two_hosts;
    pub mod unstage;
}
