//! Where the secrets come from: a flag or an environment variable as before, or a file
//! (`--api-key-file`, the `*_FILE` twin of each variable, as Docker and compose secrets
//! use), or a systemd credential (`LoadCredential=` in the unit, read from
//! `$CREDENTIALS_DIRECTORY`). A secret never appears in a message: errors name the flag,
//! the variable or the file, never the value.
//!
//! Each secret is taken from the first of these that is set:
//!
//! | secret | flag | flag file | variables (each also as `NAME_FILE`) | credential |
//! |---|---|---|---|---|
//! | Brevo API key | `--api-key` | `--api-key-file` | `SENDINBLUE_API_KEY`, `BREVO_API_KEY` | `sendinblue-api-key` |
//! | AMQP URL (its password) | `--amqp-url` | `--amqp-url-file` | `QUEUE_SERVICE_URL`, `RABBITMQ_URL` | `queue-service-url` |
//! | Pushgateway password | | `--pushgateway-password-file` | `PUSHGATEWAY_PASSWORD` | `pushgateway-password` |
//!
//! A value and a file for the same thing (`X` and `X_FILE`, or `--x` and `--x-file`) is
//! an error: one of them would be silently ignored. A secret file readable by other users
//! gets a warning naming the fix.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Failure, Secret};

/// The largest secret file read (a key or a URL is far smaller).
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// The environment variable systemd points at the run's credentials.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// Credential names (`LoadCredential=NAME:PATH`).
pub const CRED_API_KEY: &str = "sendinblue-api-key";
/// The AMQP URL, password included.
pub const CRED_AMQP_URL: &str = "queue-service-url";
/// The Pushgateway basic-auth password.
pub const CRED_PUSHGATEWAY_PASSWORD: &str = "pushgateway-password";

/// The security options as plain values (the flags of the same names; see `--help`).
#[derive(Debug, Clone, Default)]
pub struct SecuritySettings {
    /// `--api-key-file`.
    pub api_key_file: Option<PathBuf>,
    /// `--amqp-url-file`.
    pub amqp_url_file: Option<PathBuf>,
    /// `--amqp-ca-file` / `ACASO_MAIL_AMQP_CA_FILE`.
    pub amqp_ca_file: Option<PathBuf>,
    /// `--pushgateway-user` / `PUSHGATEWAY_USER`.
    pub pushgateway_user: Option<String>,
    /// `--pushgateway-password-file`.
    pub pushgateway_password_file: Option<PathBuf>,
    /// `--pushgateway-ca-file` / `PUSHGATEWAY_CA_FILE`.
    pub pushgateway_ca_file: Option<PathBuf>,
}

/// Where one secret may come from, in order.
pub struct Sources<'a> {
    /// What it is, for messages ("API key").
    pub what: &'a str,
    /// The value given on the command line (or by clap from its variable), and how to
    /// name it in messages.
    pub value: Option<(&'a str, &'a str)>,
    /// A file given on the command line, and its flag.
    pub file: Option<(&'a Path, &'a str)>,
    /// Variables holding the value; `NAME_FILE` holds a path to a file with it.
    pub vars: &'a [&'a str],
    /// The systemd credential's name.
    pub credential: &'a str,
}

/// The secret from the first source that has one, `None` when none does.
pub fn resolve(
    src: &Sources<'_>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, Failure> {
    let both = |a: &str, b: &str| {
        Failure::Usage(format!(
            "both {a} and {b} are set for the {}: keep one",
            src.what
        ))
    };
    let value = src.value.filter(|(v, _)| !v.is_empty());
    if let (Some((_, v)), Some((_, f))) = (value, src.file) {
        return Err(both(v, f));
    }
    for var in src.vars {
        let file_var = format!("{var}_FILE");
        if env(var).is_some() && env(&file_var).is_some() {
            return Err(both(var, &file_var));
        }
    }
    if let Some((v, _)) = value {
        return Ok(Some(Secret::new(v)));
    }
    if let Some((path, flag)) = src.file {
        return read_file(path, src.what, flag).map(Some);
    }
    for var in src.vars {
        if let Some(v) = env(var) {
            return Ok(Some(Secret::new(v)));
        }
        let file_var = format!("{var}_FILE");
        if let Some(path) = env(&file_var) {
            return read_file(Path::new(&path), src.what, &file_var).map(Some);
        }
    }
    if let Some(dir) = env(CREDENTIALS_DIRECTORY) {
        let path = Path::new(&dir).join(src.credential);
        if path.exists() {
            let label = format!("credential {}", src.credential);
            return read_file(&path, src.what, &label).map(Some);
        }
    }
    Ok(None)
}

/// Reads a secret from a file: one value, a final line break ignored. Errors name the
/// file and how it was given (`label`), never its contents.
pub fn read_file(path: &Path, what: &str, label: &str) -> Result<Secret, Failure> {
    let fail = |why: String| {
        Failure::Usage(format!(
            "cannot read the {what} from {} ({label}): {why}",
            path.display()
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(fail(format!("larger than {MAX_SECRET_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(fail("the file is empty".into()));
    }
    if value.contains('\n') {
        return Err(fail("expected one line".into()));
    }
    if let Some(w) = exposure_warning(path, meta.permissions().mode(), what) {
        crate::warn::warning(&w);
    }
    Ok(Secret::new(value))
}

/// The warning for a secret file other users can read, if it is one.
pub fn exposure_warning(path: &Path, mode: u32, what: &str) -> Option<String> {
    (mode & 0o004 != 0).then(|| {
        format!(
            "{} holds the {what} and is readable by other users (mode {:04o}): chmod 600 {0}",
            path.display(),
            mode & 0o7777
        )
    })
}

/// The secrets acaso-mail reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The Brevo API key: `--api-key`, `--api-key-file`, `SENDINBLUE_API_KEY(_FILE)`,
    /// `BREVO_API_KEY(_FILE)`, then the `sendinblue-api-key` credential.
    ApiKey,
    /// The AMQP URL: `--amqp-url` (or `QUEUE_SERVICE_URL`, which clap reads into it),
    /// `--amqp-url-file`, `QUEUE_SERVICE_URL_FILE`, `RABBITMQ_URL` (what Dokku's
    /// rabbitmq plugin exports), then the `queue-service-url` credential.
    AmqpUrl,
    /// The Pushgateway password: `--pushgateway-password-file`,
    /// `PUSHGATEWAY_PASSWORD(_FILE)`, then the `pushgateway-password` credential.
    PushgatewayPassword,
}

impl Which {
    /// What it is, how its value flag is named in messages, and its variables.
    fn names(self) -> (&'static str, &'static str, &'static [&'static str]) {
        match self {
            Which::ApiKey => (
                "API key",
                "--api-key",
                &["SENDINBLUE_API_KEY", "BREVO_API_KEY"],
            ),
            Which::AmqpUrl => ("RabbitMQ URL", "--amqp-url / QUEUE_SERVICE_URL", &AMQP_VARS),
            Which::PushgatewayPassword => ("Pushgateway password", "", &["PUSHGATEWAY_PASSWORD"]),
        }
    }

    /// Its file flag, and the file given with it.
    fn file(self, args: &SecuritySettings) -> (&'static str, Option<&Path>) {
        match self {
            Which::ApiKey => ("--api-key-file", args.api_key_file.as_deref()),
            Which::AmqpUrl => ("--amqp-url-file", args.amqp_url_file.as_deref()),
            Which::PushgatewayPassword => {
                let file = args.pushgateway_password_file.as_deref();
                ("--pushgateway-password-file", file)
            }
        }
    }

    /// Its systemd credential's name.
    fn credential(self) -> &'static str {
        match self {
            Which::ApiKey => CRED_API_KEY,
            Which::AmqpUrl => CRED_AMQP_URL,
            Which::PushgatewayPassword => CRED_PUSHGATEWAY_PASSWORD,
        }
    }
}

/// The variables the AMQP URL is read from, in order.
const AMQP_VARS: [&str; 2] = ["QUEUE_SERVICE_URL", "RABBITMQ_URL"];

/// Reads one secret from its first source that is set (see [`Which`]); `flag` is the
/// value its flag was given, if it has one.
pub fn read(
    which: Which,
    flag: Option<&str>,
    args: &SecuritySettings,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, Failure> {
    let (what, flag_name, vars) = which.names();
    let (file_flag, file) = which.file(args);
    let sources = Sources {
        what,
        value: flag.map(|v| (v, flag_name)),
        file: file.map(|p| (p, file_flag)),
        vars,
        credential: which.credential(),
    };
    resolve(&sources, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: Vec<(String, String)>) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    fn key(
        flag: Option<&str>,
        args: &SecuritySettings,
        env: Vec<(String, String)>,
    ) -> Option<String> {
        read(Which::ApiKey, flag, args, &env_of(env))
            .expect("resolves")
            .map(|k| k.expose().to_string())
    }

    #[test]
    fn files_and_credentials_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let f1 = write(dir.path(), "flag", "k-flagfile\n", 0o600);
        let f2 = write(dir.path(), "var", "k-varfile\r\n", 0o600);
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).expect("mkdir");
        write(&creds, CRED_API_KEY, "k-cred", 0o400);
        let cred_env = (s(CREDENTIALS_DIRECTORY), creds.display().to_string());
        let with_file = SecuritySettings {
            api_key_file: Some(f1.clone()),
            ..Default::default()
        };
        let none = SecuritySettings::default();
        assert_eq!(
            key(Some("k-flag"), &none, vec![cred_env.clone()]).as_deref(),
            Some("k-flag")
        );
        assert_eq!(
            key(
                None,
                &with_file,
                vec![(s("SENDINBLUE_API_KEY"), s("k-env"))]
            )
            .as_deref(),
            Some("k-flagfile")
        );
        let var_file = (s("BREVO_API_KEY_FILE"), f2.display().to_string());
        assert_eq!(
            key(None, &none, vec![var_file.clone(), cred_env.clone()]).as_deref(),
            Some("k-varfile")
        );
        assert_eq!(
            key(
                None,
                &none,
                vec![(s("SENDINBLUE_API_KEY"), s("k-s")), var_file]
            )
            .as_deref(),
            Some("k-s")
        );
        assert_eq!(key(None, &none, vec![cred_env]).as_deref(), Some("k-cred"));
        // A credentials directory without this credential is no error.
        let other = (s(CREDENTIALS_DIRECTORY), dir.path().display().to_string());
        assert_eq!(key(None, &none, vec![other]), None);
        assert_eq!(key(None, &none, vec![]), None);
    }

    #[test]
    fn a_value_and_a_file_for_the_same_secret_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = write(dir.path(), "k", "k-file", 0o600);
        let args = SecuritySettings {
            api_key_file: Some(f.clone()),
            ..Default::default()
        };
        let err = read(Which::ApiKey, Some("SECRET-1"), &args, &env_of(vec![])).expect_err("both");
        assert!(err.to_string().contains("--api-key-file"), "{err}");
        let env = env_of(vec![
            (s("SENDINBLUE_API_KEY"), s("SECRET-2")),
            (s("SENDINBLUE_API_KEY_FILE"), f.display().to_string()),
        ]);
        let err = read(Which::ApiKey, None, &SecuritySettings::default(), &env).expect_err("both");
        let msg = err.to_string();
        assert!(msg.contains("SENDINBLUE_API_KEY_FILE"), "{msg}");
        assert!(!msg.contains("SECRET") && !msg.contains("k-file"), "{msg}");
        assert!(matches!(err, Failure::Usage(_)));
    }

    #[test]
    fn bad_files_are_refused_without_showing_their_contents() {
        let dir = tempfile::tempdir().expect("tmp");
        let empty = write(dir.path(), "empty", "\n", 0o600);
        let lines = write(dir.path(), "lines", "SECRET-A\nSECRET-B\n", 0o600);
        for (path, hint) in [
            (empty, "empty"),
            (lines, "one line"),
            (dir.path().join("missing"), "No such file"),
            (dir.path().to_path_buf(), "regular file"),
        ] {
            let args = SecuritySettings {
                pushgateway_password_file: Some(path.clone()),
                ..Default::default()
            };
            let err =
                read(Which::PushgatewayPassword, None, &args, &env_of(vec![])).expect_err("bad");
            let msg = err.to_string();
            assert!(msg.contains(hint), "{msg}");
            assert!(msg.contains("--pushgateway-password-file"), "{msg}");
            assert!(!msg.contains("SECRET"), "{msg}");
            assert!(matches!(err, Failure::Usage(_)));
        }
    }

    #[test]
    fn world_readable_files_are_flagged() {
        let p = Path::new("/etc/acaso-mail/key");
        let w = exposure_warning(p, 0o100644, "API key").expect("warned");
        assert!(
            w.contains("readable by other users") && w.contains("chmod 600 /etc/acaso-mail/key"),
            "{w}"
        );
        assert!(w.contains("0644"), "{w}");
        assert_eq!(exposure_warning(p, 0o100600, "API key"), None);
        assert_eq!(exposure_warning(p, 0o100640, "API key"), None);
    }

    #[test]
    fn amqp_url_from_file_and_credential() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = write(
            dir.path(),
            CRED_AMQP_URL,
            "amqps://u:pw@h:5671/%2f\n",
            0o600,
        );
        let args = SecuritySettings {
            amqp_url_file: Some(f),
            ..Default::default()
        };
        let url = read(Which::AmqpUrl, None, &args, &env_of(vec![]))
            .expect("ok")
            .expect("some");
        assert_eq!(url.expose(), "amqps://u:pw@h:5671/%2f");
        let env = env_of(vec![(
            s(CREDENTIALS_DIRECTORY),
            dir.path().display().to_string(),
        )]);
        let url = read(Which::AmqpUrl, None, &SecuritySettings::default(), &env)
            .expect("ok")
            .expect("some");
        assert_eq!(url.expose(), "amqps://u:pw@h:5671/%2f");
    }
}
