//! The README's deploy, run as written: the system user, the files installed the way the
//! "Install" and "With cron" blocks of docs/scheduling.md say (paths moved under a temporary root, the user
//! renamed), each crontab line run as that user the way cron would, and a manual runbook
//! command from a root shell through acaso-mail-run. They must share one state directory
//! and one lock. Needs root (CI runs as root: `bash .ci/run`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use crate::support::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shell block that follows `marker` in `file` (README.md, or the docs/ file the
/// section lives in).
fn readme_block(file: &str, marker: &str) -> String {
    let text = std::fs::read_to_string(root().join(file)).expect(file);
    let after = text
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("{file} has no {marker:?}"));
    let body = after.split("```sh\n").nth(1).expect("a ```sh block");
    body.split("\n```").next().expect("block end").to_string()
}

/// The system user, removed at the end.
struct User(String);

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).output();
    }
}

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_readme_deploy_runs_as_written() {
    let uid = nix_uid();
    assert_eq!(
        uid, 0,
        "this test installs a system user: run it as root (bash .ci/run does)"
    );
    let w = World::new("deploy-readme", 300.0);
    let t = tempfile::tempdir().expect("tmp");
    let t_path = t.path().to_path_buf();
    std::fs::set_permissions(&t_path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let user = User(format!("acm{}", std::process::id() % 1_000_000));
    let _ = Command::new("userdel").arg(&user.0).output();
    let (etc, home, bin) = (t_path.join("etc"), t_path.join("home"), t_path.join("bin"));
    std::fs::create_dir(&bin).expect("bin");
    let binary = assert_cmd::cargo::cargo_bin("acaso-mail");

    let mut script = String::from("set -euxo pipefail\n");
    for block in ["**Install, for either schedule**", "**With cron**"] {
        for line in readme_block("docs/scheduling.md", block).lines() {
            if line.starts_with("cargo build") || line.starts_with("crontab -u") {
                continue; // built already; the crontab's lines are run below
            }
            script.push_str(line);
            script.push('\n');
        }
    }
    let u = &user.0;
    let script = script
        .replace("/etc/acaso-mail", &etc.display().to_string())
        .replace("/var/lib/acaso-mail", &home.display().to_string())
        .replace(
            "/usr/local/share/man",
            &t_path.join("man").display().to_string(),
        )
        .replace("/usr/local/bin/", &format!("{}/", bin.display()))
        .replace("target/release/acaso-mail", &binary.display().to_string())
        .replace("deploy/", &format!("{}/deploy/", root().display()))
        .replace("man/*.1", &format!("{}/man/*.1", root().display()))
        .replace("'xkeysib-...'", &format!("'{KEY}'"))
        .replace(
            "'amqp://acaso:PASSWORD@127.0.0.1:5672/%2f'",
            &format!("'{AMQP}'"),
        )
        .replace("-o acaso-mail", &format!("-o {u}"))
        .replace("-g acaso-mail", &format!("-g {u}"))
        .replace("chown acaso-mail:acaso-mail", &format!("chown {u}:{u}"))
        .replace(
            "--shell /usr/sbin/nologin acaso-mail",
            &format!("--shell /usr/sbin/nologin {u}"),
        );
    assert!(
        !script.contains(" acaso-mail\n"),
        "user left unrenamed:\n{script}"
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(root())
        .output()
        .expect("bash");
    check(&format!("the README's blocks:\n{script}"), &out);

    // "then edit it": this world's queue and Brevo stand-in, and this root's paths.
    let env_file = etc.join("acaso-mail.env");
    let env = std::fs::read_to_string(&env_file)
        .expect("env file")
        .replace("/var/lib/acaso-mail", &home.display().to_string())
        .replace(
            "ACASO_MAIL_QUEUE=acaso.mail",
            &format!("ACASO_MAIL_QUEUE={}", w.queue),
        )
        .replace("https://api.brevo.com/v3", &w.fake.url);
    std::fs::write(&env_file, env).expect("edit env");

    // Item 15: the service user can read its configuration; other users cannot.
    let meta = std::fs::metadata(&env_file).expect("env");
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o640, 0));
    let as_user = |args: &[&str]| {
        Command::new("runuser")
            .args(["-u", u, "--"])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &home)
            .env("ACASO_MAIL_RUN_ETC", &etc)
            .env("ACASO_MAIL_RUN_BIN", bin.join("acaso-mail"))
            .env("ACASO_MAIL_RUN_USER", u)
            .output()
            .expect("runuser")
    };
    check(
        "the user reads the env file",
        &as_user(&["test", "-r", &env_file.display().to_string()]),
    );
    let nobody = Command::new("runuser")
        .args(["-u", "nobody", "--", "test", "-r"])
        .arg(&env_file)
        .output()
        .expect("runuser");
    assert!(
        !nobody.status.success(),
        "nobody must not read the env file"
    );

    // A manual run from a root shell, as the runbooks write it (HOME is root's).
    let root_home = t_path.join("root-home");
    std::fs::create_dir(&root_home).expect("root home");
    let as_root = |args: &[&str]| {
        Command::new(bin.join("acaso-mail-run"))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &root_home)
            .env("ACASO_MAIL_RUN_ETC", &etc)
            .env("ACASO_MAIL_RUN_BIN", bin.join("acaso-mail"))
            .env("ACASO_MAIL_RUN_USER", u)
            .output()
            .expect("acaso-mail-run")
    };
    check("publish by hand", &as_root(&["publish", "-n", "3"]));

    // Each crontab line, as cron runs it: the user's shell line, a minimal environment.
    let crontab = std::fs::read_to_string(root().join("deploy/crontab")).expect("crontab");
    let jobs: Vec<String> = crontab
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains('=') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().skip(5).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(jobs.len(), 4, "{crontab}");
    for job in &jobs {
        let line = job.replace("/usr/local/bin/", &format!("{}/", bin.display()));
        check(
            &format!("crontab: {line}"),
            &as_user(&["/bin/sh", "-c", &line]),
        );
    }
    check("publish by hand", &as_root(&["publish", "-n", "2"]));
    // The alert runbook's command.
    check(
        "runbook",
        &as_root(&["drain-hourly", "--limit", "unlimited"]),
    );
    assert_eq!(w.fake.accepted().len(), 5, "every mail sent once");

    // One state directory: the service user's, holding what both kinds of run did.
    assert!(home.join("state.sqlite3").exists());
    assert_eq!(
        std::fs::metadata(home.join("state.sqlite3"))
            .expect("db")
            .uid(),
        user_uid(u)
    );
    assert!(
        !root_home.join(".local").exists(),
        "a manual run used root's own state"
    );
    let stats = as_root(&["--json", "stats"]);
    check("stats", &stats);
    assert_eq!(
        stdout_json(&stats)["today"]["sent"],
        5,
        "one journal for cron and by hand"
    );

    // With systemd's credentials instead of secret files (the README's systemd block up
    // to the units, which need a running systemd): a manual run from root gets them the
    // way the unit does, and the private copy is gone afterwards.
    let systemd: String = readme_block("docs/scheduling.md", "**With systemd**")
        .lines()
        .take_while(|l| !l.starts_with("install -m 0644 deploy/systemd"))
        .map(|l| format!("{l}\n"))
        .collect();
    let systemd = systemd
        .replace("/etc/acaso-mail", &etc.display().to_string())
        .replace("'xkeysib-...'", &format!("'{KEY}'"))
        .replace(
            "'amqp://acaso:PASSWORD@127.0.0.1:5672/%2f'",
            &format!("'{AMQP}'"),
        );
    let out = Command::new("bash")
        .args(["-c", &format!("set -euxo pipefail\n{systemd}")])
        .output()
        .expect("bash");
    check(&format!("the README's credentials:\n{systemd}"), &out);
    let env = std::fs::read_to_string(&env_file).expect("env");
    let without_files: String = env
        .lines()
        .filter(|l| !l.contains("_FILE="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&env_file, without_files).expect("env");
    let run_dirs = || {
        std::fs::read_dir("/run")
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with("acaso-mail-run.")
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let before = run_dirs();
    let stats = as_root(&["--json", "stats"]);
    check("stats with the credentials", &stats);
    assert_eq!(
        stdout_json(&stats)["credits"],
        295.0,
        "the key came from the credential"
    );
    assert_eq!(run_dirs(), before, "the credentials' copy was left behind");
    std::fs::write(&env_file, env).expect("env back as cron needs it");

    // One lock: held by someone else, a manual run and a cron line both wait for it.
    let lock = home.join("run.lock");
    // -o: the lock is flock's own, so killing it releases the lock.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .args(["sleep", "15"])
        .spawn()
        .expect("flock");
    wait_until(
        "flock to hold the lock",
        std::time::Duration::from_secs(60),
        || lock_is_held(&lock),
    );
    let manual = as_root(&["--lock-wait", "1", "stats"]);
    let cron = Command::new("runuser")
        .args(["-u", u, "--", "/bin/sh", "-c"])
        .arg(jobs[1].replace("/usr/local/bin/", &format!("{}/", bin.display())))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("ACASO_MAIL_LOCK_WAIT", "1")
        .env("ACASO_MAIL_RUN_ETC", &etc)
        .env("ACASO_MAIL_RUN_BIN", bin.join("acaso-mail"))
        .env("ACASO_MAIL_RUN_USER", u)
        .output()
        .expect("cron line");
    let _ = holder.kill();
    let _ = holder.wait();
    for (what, out) in [("manual", &manual), ("cron", &cron)] {
        assert_eq!(
            out.status.code(),
            Some(6),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&lock.display().to_string()),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Whether someone holds the flock on `lock`: a non-blocking try from here fails. A try
/// that succeeds lets go at once (and so does a missing file: no one holds it yet).
fn lock_is_held(lock: &Path) -> bool {
    std::fs::File::open(lock)
        .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

fn nix_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

fn user_uid(name: &str) -> u32 {
    let out = Command::new("id").args(["-u", name]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("uid")
}

#[test]
fn the_runbooks_run_commands_through_acaso_mail_run() {
    let files = [
        "monitoring/alerts.yml",
        "monitoring/alerts.test.yml",
        "docs/metrics.md",
    ];
    for file in files {
        let text = std::fs::read_to_string(root().join(file)).expect(file);
        for line in text
            .lines()
            .filter(|l| l.contains("description:") || l.starts_with("| `AcasoMail"))
        {
            for sub in [
                "drain-hourly",
                "drain-eod",
                "stats",
                "dead-letters",
                "--json",
            ] {
                assert!(
                    !line.contains(&format!("acaso-mail {sub}")),
                    "{file}: a runbook runs acaso-mail without acaso-mail-run: {line}"
                );
            }
        }
    }
    let alerts = std::fs::read_to_string(root().join("monitoring/alerts.yml")).expect("alerts");
    assert!(alerts.contains("sudo acaso-mail-run drain-hourly --limit unlimited"));
}

/// A vhost and a user of this test's own, removed at the end.
struct Broker {
    vhost: String,
    user: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_user", &self.user])
            .output();
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_vhost", &self.vhost])
            .output();
    }
}

#[test]
fn the_readme_rabbitmq_user_can_run_every_command_on_its_queues_only() {
    let id = std::process::id();
    let b = Broker {
        vhost: format!("acaso-test-{id}"),
        user: format!("acaso-test-{id}"),
    };
    let password = format!("pw{id}");
    let block = readme_block("docs/scheduling.md", "### RabbitMQ user");
    let script = block
        .replace(
            "add_user acaso 'PASSWORD'",
            &format!("add_user {} '{password}'", b.user),
        )
        .replace(
            "authenticate_user acaso 'PASSWORD'",
            &format!("authenticate_user {} '{password}'", b.user),
        )
        .replace(
            "set_permissions -p / acaso ",
            &format!("set_permissions -p {} {} ", b.vhost, b.user),
        );
    assert!(
        !script.contains("acaso '") && !script.contains(" acaso "),
        "{script}"
    );
    let script = format!(
        "set -euxo pipefail\nrabbitmqctl -q add_vhost {}\n{script}",
        b.vhost
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    check(&format!("the README's RabbitMQ block:\n{script}"), &out);

    let w = World::new("rabbit-user", 300.0);
    let url = format!("amqp://{}:{password}@127.0.0.1:5672/{}", b.user, b.vhost);
    let run = |queue: &str, args: &[&str]| {
        w.cmd()
            .env("QUEUE_SERVICE_URL", &url)
            .env("ACASO_MAIL_QUEUE", queue)
            .args(args)
            .output()
            .expect("run")
    };
    for args in [
        &["publish", "-n", "3"][..],
        &["peek"],
        &["stats"],
        &["reprioritize"],
        &["drain-hourly"],
        &["drain-eod"],
        &["events"],
        &["dead-letters"],
        &["dead-letters", "purge", "--all"],
    ] {
        check(
            &format!("{args:?} as the README's user"),
            &run("acaso.mail", args),
        );
    }
    assert_eq!(w.fake.accepted().len(), 3);
    // Another queue is not its own.
    let out = run("other.queue", &["publish", "-n", "1"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 21: the quick start's "Your own jobs, by hand" block, run as written in one
/// shell (the build skipped: done already; the stand-in's port and the queue made this
/// test's own): acaso-mail found on PATH, the sample jobs published to the named queue,
/// drained through the stand-in started on its own, and everything removed at the end.
#[test]
fn the_quick_start_own_jobs_run_as_written() {
    let block = readme_block("README.md", "**Your own jobs, by hand**");
    let bin_dir = assert_cmd::cargo::cargo_bin("acaso-mail")
        .parent()
        .expect("target dir")
        .to_path_buf();
    assert!(bin_dir.join("examples/fake-brevo").exists());
    assert!(bin_dir.join("examples/delete-queues").exists());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let queue = unique("acaso.mail.try");
    let tmp = tempfile::tempdir().expect("tmp");
    // Should a line fail, the stand-in started in the background must not outlive it.
    let mut script =
        String::from("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n");
    for line in block.lines() {
        if line.starts_with("cargo build") {
            assert!(line.contains("--bin acaso-mail --example fake-brevo --example delete-queues"));
            continue; // built already, by cargo test
        }
        script.push_str(line);
        script.push('\n');
    }
    assert!(
        script.contains("export PATH=$PWD/target/debug:$PATH"),
        "{script}"
    );
    let script = script
        .replace("$PWD/target/debug", &bin_dir.display().to_string())
        .replace("target/debug/", &format!("{}/", bin_dir.display()))
        .replace("8025", &port.to_string())
        .replace("acaso.mail.try", &queue);
    // PATH without the target directory: the block must put acaso-mail there itself.
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(root())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", tmp.path())
        .env("TMPDIR", tmp.path())
        .output()
        .expect("bash");
    check(&format!("the quick start's own jobs:\n{script}"), &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("published 5 mail(s) to {queue}")),
        "{stdout}"
    );
    assert!(stdout.contains("sent 5 of a budget"), "{stdout}");
    assert_eq!(stdout.matches("accepted: template").count(), 5, "{stdout}");
    assert!(stdout.contains("today: 5 sent"), "{stdout}");
    // doctor, run as written against the stand-in, passes every check.
    assert!(stdout.contains("checks passed"), "{stdout}");
    for q in [
        queue.clone(),
        format!("{queue}.dead"),
        format!("{queue}.retry.60s"),
    ] {
        assert!(!queue_exists(&q), "{q} left behind");
    }
}
