//! The state directory holds personal data (every recipient's address, in the journal):
//! it is created 0700 and its files 0600, whatever the caller's umask. An existing
//! directory other users can enter gets a warning naming the fix; it is not changed
//! behind the operator's back.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;

/// Mode of the state directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files in it.
pub const FILE_MODE: u32 = 0o600;

/// Creates the state directory (and missing parents) mode 0700, or warns once per run
/// when an existing one is open to other users.
pub fn state_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)?;
        // Whatever the umask, exactly 0700.
        return std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE));
    }
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if let Some(w) = dir_warning(dir, mode) {
        warn_once(dir, &w);
    }
    Ok(())
}

/// Makes sure `path` exists as a file only its owner can read and write: created 0600
/// when missing, narrowed to 0600 when it is more open. SQLite gives the journal's
/// `-wal` and `-shm` files the mode of the database, so preparing the database file is
/// enough for those it creates; existing ones are narrowed too.
pub fn state_file(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    narrow(path)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = Path::new(&side);
        if side.exists() {
            narrow(side)?;
        }
    }
    Ok(())
}

fn narrow(path: &Path) -> io::Result<()> {
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

/// The warning for a state directory other users can enter or read, if it is one.
pub fn dir_warning(dir: &Path, mode: u32) -> Option<String> {
    (mode & 0o077 != 0).then(|| {
        format!(
            "the state directory {} is open to other users (mode {:04o}) and holds recipients' addresses: chmod 700 {0}",
            dir.display(),
            mode & 0o7777
        )
    })
}

fn warn_once(dir: &Path, warning: &str) {
    static WARNED: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if !warned.iter().any(|d| d == dir) {
        warned.push(dir.to_path_buf());
        crate::warn::warning(warning);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_state_is_private_and_open_state_is_narrowed_or_flagged() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("a/b/state");
        state_dir(&dir).expect("create");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let db = dir.join("state.sqlite3");
        state_file(&db).expect("file");
        assert_eq!(mode(&db), 0o600);
        std::fs::set_permissions(&db, Permissions::from_mode(0o644)).expect("chmod");
        let wal = dir.join("state.sqlite3-wal");
        std::fs::write(&wal, b"x").expect("wal");
        std::fs::set_permissions(&wal, Permissions::from_mode(0o644)).expect("chmod");
        state_file(&db).expect("narrow");
        assert_eq!((mode(&db), mode(&wal)), (0o600, 0o600));
        assert_eq!(std::fs::read(&wal).expect("kept"), b"x");

        let w = dir_warning(&dir, 0o40755).expect("warned");
        assert!(
            w.contains("0755") && w.contains(&format!("chmod 700 {}", dir.display())),
            "{w}"
        );
        assert_eq!(dir_warning(&dir, 0o40700), None);
    }
}
