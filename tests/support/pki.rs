//! A throwaway PKI for the TLS tests, made with `openssl` (`scripts/services --test`
//! installs it): two unrelated CAs (`ca.pem`, `other-ca.pem`) and a server certificate
//! signed by the first for `localhost` and 127.0.0.1 (`server.pem`, `server.key`), all
//! EC P-256, valid for 100 years so that a test run a year ahead (libfaketime) still
//! finds them valid. Used by the private RabbitMQ node (`node.rs`) and the private
//! PostgreSQL (`pg.rs`, which the library's unit tests compile too); `run_checked`, the
//! way both run a tool that must succeed, serves the cluster's own tools as well.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `cmd`, failing the test with its output when it fails; `what` names it.
pub fn run_checked(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what} must be installed (scripts/services --test): {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn openssl(dir: &Path, args: &[&str]) {
    run_checked(
        Command::new("openssl").args(args).current_dir(dir),
        &format!("openssl {args:?}"),
    );
}

/// The key options of every certificate here: EC P-256.
const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// Makes the CAs and the server certificate in `dir` (a second or two).
pub fn make(dir: &Path) {
    for (name, cn) in [
        ("ca", "acaso-mail test CA"),
        ("other-ca", "acaso-mail unrelated test CA"),
    ] {
        let (key, pem, subj) = (
            format!("{name}.key"),
            format!("{name}.pem"),
            format!("/CN={cn}"),
        );
        let mut args = vec!["req", "-x509"];
        args.extend(EC);
        args.extend(["-nodes", "-keyout", &key, "-out", &pem, "-days", "36500"]);
        args.extend([
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ]);
        args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(dir, &args);
    }
    let mut args = vec!["req", "-new"];
    args.extend(EC);
    args.extend(["-nodes", "-keyout", "server.key", "-out", "server.csr"]);
    args.extend(["-subj", "/CN=localhost"]);
    openssl(dir, &args);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("server.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "36500",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}
