//! Files and folders that hold contact data are created readable by their owner only (files
//! 0600, folders 0700), whatever the umask: the store, its lock, the CSV exports and the report.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

#[cfg(unix)]
const FILE_MODE: u32 = 0o600;
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;

/// Creates `path` for writing (emptied if it exists), readable by its owner only.
pub(crate) fn create(path: &Path) -> io::Result<File> {
    let file = options().truncate(true).open(path)?;
    owner_only(&file)?;
    Ok(file)
}

/// Writes `contents` to `path` (created, or replaced), readable by its owner only.
pub(crate) fn write(path: &Path, contents: impl AsRef<[u8]>) -> io::Result<()> {
    create(path)?.write_all(contents.as_ref())
}

/// Opens `path` for writing as it is, creating it readable by its owner only when it is missing
/// (a file that exists keeps the mode its owner gave it). SQLite gives a store's journal, WAL
/// and shared-memory files the mode of the store itself.
pub(crate) fn open_or_create(path: &Path) -> io::Result<File> {
    match options().create_new(true).open(path) {
        Ok(file) => {
            owner_only(&file)?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            OpenOptions::new().write(true).open(path)
        }
        Err(e) => Err(e),
    }
}

/// Creates the folder `path` (its parent must exist), readable by its owner only.
pub(crate) fn create_dir(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    builder.mode(DIR_MODE);
    builder.create(path)?;
    #[cfg(unix)]
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(DIR_MODE))?;
    Ok(())
}

fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    options.mode(FILE_MODE);
    options
}

/// The umask may only take bits away from the mode a file is created with: this sets it exactly.
fn owner_only(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    let _ = file;
    Ok(())
}
