//! One function per command: open the store, call the library, print like Docker.

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use strata_image::inspect::{self, ListFilter};
use strata_image::{ImportOptions, ImportSource, SaveFormat, document::StoredImage, human};
use strata_oci::{Platform, Reference};
use strata_store::Store;

use crate::output::write_output;
use crate::progress::{ProgressReader, ProgressWriter, bar};

fn open(root: &Path) -> Result<Store> {
    Store::open(root).with_context(|| format!("opening the store at {}", root.display()))
}

fn parse_reference(input: &str) -> Result<Reference> {
    Reference::parse(input).with_context(|| format!("invalid reference format: {input:?}"))
}

/// `--format` for single objects (inspect): a Go template per element, or JSON.
fn print_objects(values: &[Value], format: Option<&str>) -> Result<()> {
    let mut out = io::stdout().lock();
    match format {
        None | Some("json") => {
            let mut buf = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
            serde::Serialize::serialize(&Value::Array(values.to_vec()), &mut ser)?;
            buf.push(b'\n');
            out.write_all(&buf)?;
        }
        Some(template) => {
            let template =
                strata_gotmpl::Template::parse(template).context("template parsing error")?;
            for value in values {
                let text = template
                    .execute(value)
                    .context("template execution error")?;
                writeln!(out, "{text}")?;
            }
        }
    }
    Ok(())
}

/// `--format` for lists: the command's default table unless the user gave a format.
fn print_list(
    format: Option<&str>,
    default_table: &str,
    rows: &[Value],
    headers: &Value,
) -> Result<()> {
    let text = strata_gotmpl::render_list(
        format.unwrap_or(default_table),
        default_table,
        rows,
        headers,
    )
    .context("template error")?;
    io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

fn go_time(time: Option<chrono::DateTime<chrono::Utc>>) -> String {
    time.map_or_else(
        || "N/A".into(),
        |t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
    )
}

#[derive(Args)]
pub struct ImagesArgs {
    /// Only images matching REPOSITORY[:TAG] (globs allowed)
    reference: Option<String>,
    /// Show all images (there are no intermediate images to hide; accepted for compatibility)
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Filter output: dangling=true|false, reference=GLOB, label=KEY[=VALUE], before=IMAGE, since=IMAGE
    #[arg(short, long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
    /// Pretty-print with a Go template ("table ...", "json", "{{.ID}}")
    #[arg(long)]
    format: Option<String>,
}

pub fn images(root: &Path, args: ImagesArgs) -> Result<()> {
    let _ = args.all;
    let store = open(root)?;
    let catalog = store.catalog()?;
    let mut filters = args
        .filters
        .iter()
        .map(|f| ListFilter::parse(f, &catalog))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(reference) = &args.reference {
        filters.push(ListFilter::Reference(reference.clone()));
    }
    let rows = inspect::list(&store, &catalog, &filters)?;
    let id_text = |id: &strata_oci::Digest| {
        if args.no_trunc {
            id.to_string()
        } else {
            id.short_id().to_string()
        }
    };
    if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = io::stdout().lock();
        for row in &rows {
            if seen.insert(row.id.clone()) {
                writeln!(out, "{}", id_text(&row.id))?;
            }
        }
        return Ok(());
    }
    let now = chrono::Utc::now();
    let values: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "Containers": "N/A",
                "CreatedAt": go_time(row.created),
                "CreatedSince": human::since(row.created, now),
                "Digest": row.digest,
                "ID": id_text(&row.id),
                "Repository": row.repository,
                "SharedSize": "N/A",
                "Size": human::human_size(row.size),
                "Tag": row.tag,
                "UniqueSize": "N/A",
                "VirtualSize": human::human_size(row.size),
            })
        })
        .collect();
    let headers = json!({
        "Containers": "CONTAINERS", "CreatedAt": "CREATED AT", "CreatedSince": "CREATED", "Digest": "DIGEST",
        "ID": "IMAGE ID", "Repository": "REPOSITORY", "SharedSize": "SHARED SIZE", "Size": "SIZE", "Tag": "TAG",
        "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE",
    });
    let default_table = if args.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    print_list(args.format.as_deref(), default_table, &values, &headers)
}

pub fn tag(root: &Path, source: &str, target: &str) -> Result<()> {
    let store = open(root)?;
    let target = parse_reference(target)?;
    strata_image::tag(&store, source, &target)?;
    Ok(())
}

#[derive(Args)]
pub struct RmiArgs {
    /// Force removal of an image with several tags or dependent images
    #[arg(short, long)]
    force: bool,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn rmi(root: &Path, args: RmiArgs) -> Result<()> {
    let store = open(root)?;
    let mut failed = false;
    for image in &args.images {
        match strata_image::remove_image(&store, image, args.force) {
            Ok(removals) => {
                for removal in removals {
                    match removal {
                        strata_image::Removal::Untagged(t) => println!("Untagged: {t}"),
                        strata_image::Removal::Deleted(id) => println!("Deleted: {id}"),
                    }
                }
            }
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        bail!("some images could not be removed");
    }
    Ok(())
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output with a Go template, or "json"
    #[arg(short, long)]
    format: Option<String>,
    /// For docker://REF: print the manifest exactly as the registry serves it
    #[arg(long, conflicts_with = "config")]
    raw: bool,
    /// For docker://REF: print the image config
    #[arg(long)]
    config: bool,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn inspect(root: &Path, args: InspectArgs) -> Result<()> {
    if args.images.iter().any(|i| i.starts_with("docker://")) {
        for image in &args.images {
            if !image.starts_with("docker://") {
                bail!("cannot mix registry (docker://) and local images in one inspect: {image}");
            }
            crate::client_cmd::inspect_docker_reference(root, image, args.raw, args.config)?;
        }
        return Ok(());
    }
    if args.raw || args.config {
        bail!("--raw and --config apply to registry images (docker://REF)");
    }
    let store = open(root)?;
    let catalog = store.catalog()?;
    let mut values = Vec::new();
    let mut missing = Vec::new();
    for input in &args.images {
        match StoredImage::resolve(&store, &catalog, input) {
            Ok(image) => values.push(inspect::inspect_json(&catalog, &image)),
            Err(e) => missing.push(e),
        }
    }
    print_objects(&values, args.format.as_deref())?;
    if let Some(first) = missing.into_iter().next() {
        return Err(first.into());
    }
    Ok(())
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Pretty-print with a Go template
    #[arg(long)]
    format: Option<String>,
    image: String,
}

fn ellipsis(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

pub fn history(root: &Path, args: HistoryArgs) -> Result<()> {
    let store = open(root)?;
    let catalog = store.catalog()?;
    let image = StoredImage::resolve(&store, &catalog, &args.image)?;
    let rows = inspect::history(&catalog, &image);
    let now = chrono::Utc::now();
    let short = |id: &str| {
        if args.no_trunc || id == "<missing>" {
            id.to_string()
        } else {
            id.trim_start_matches("sha256:").chars().take(12).collect()
        }
    };
    if args.quiet {
        for row in &rows {
            println!("{}", short(&row.id));
        }
        return Ok(());
    }
    let values: Vec<Value> = rows
        .iter()
        .map(|row| {
            let created_by = row.created_by.replace('\t', " ");
            json!({
                "ID": short(&row.id),
                "CreatedSince": if args.human { human::since(row.created, now) } else { go_time(row.created) },
                "CreatedAt": row.created.map(|t| t.to_rfc3339()).unwrap_or_default(),
                "CreatedBy": if args.no_trunc { created_by } else { ellipsis(&created_by, 45) },
                "Size": if args.human { human::human_size(row.size) } else { row.size.to_string() },
                "Comment": row.comment,
            })
        })
        .collect();
    let headers = json!({"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"});
    let default_table = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
    print_list(args.format.as_deref(), default_table, &values, &headers)
}

#[derive(Args)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ...)
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// Set the history comment
    #[arg(short, long)]
    message: Option<String>,
    /// Platform recorded in the image (default: this machine's)
    #[arg(long)]
    platform: Option<String>,
    /// A tarball (plain, gzip or zstd), a directory, or - for standard input
    source: String,
    /// Repository[:tag] for the new image
    reference: Option<String>,
}

fn source_date_epoch() -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => {
            Ok(Some(v.parse().with_context(|| {
                format!("SOURCE_DATE_EPOCH={v:?} is not an integer")
            })?))
        }
        _ => Ok(None),
    }
}

pub fn import(root: &Path, args: ImportArgs) -> Result<()> {
    let reference = args
        .reference
        .as_deref()
        .map(parse_reference)
        .transpose()?
        .map(Reference::with_default_tag);
    let platform = match &args.platform {
        Some(p) => Platform::parse(p).with_context(|| format!("invalid --platform {p:?}"))?,
        None => Platform::host(),
    };
    let options = ImportOptions {
        reference,
        changes: args.changes,
        message: args.message,
        platform,
        source_date_epoch: source_date_epoch()?,
    };
    let source = if args.source == "-" {
        let stdin: Box<dyn Read> = Box::new(io::stdin());
        let progress = bar("Importing", None);
        ImportSource::Tarball {
            reader: Box::new(ProgressReader {
                inner: stdin,
                bar: progress,
            }),
            name: "-".into(),
        }
    } else {
        let path = PathBuf::from(&args.source);
        let meta = std::fs::metadata(&path)
            .with_context(|| format!("import source {}", path.display()))?;
        if meta.is_dir() {
            ImportSource::Dir(path)
        } else {
            let file = std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            let progress = bar("Importing", Some(meta.len()));
            ImportSource::Tarball {
                reader: Box::new(ProgressReader {
                    inner: file,
                    bar: progress,
                }),
                name: args.source.clone(),
            }
        }
    };
    let store = open(root)?;
    let id = strata_image::import(&store, source, &options)?;
    println!("{id}");
    Ok(())
}

#[derive(Args)]
pub struct ExportArgs {
    /// Write to a file instead of STDOUT
    #[arg(short, long)]
    output: Option<PathBuf>,
    image: String,
}

pub fn export(root: &Path, args: ExportArgs) -> Result<()> {
    let store = open(root)?;
    write_output(args.output.as_deref(), "the export", |out| {
        strata_image::export(&store, &args.image, out)?;
        Ok(())
    })
}

#[derive(Clone, Copy, ValueEnum)]
enum ArchiveFormat {
    /// docker load-able (OCI layout plus manifest.json)
    Docker,
    /// plain OCI image layout
    Oci,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to a file instead of STDOUT
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Archive format
    #[arg(long, value_enum, default_value = "docker")]
    format: ArchiveFormat,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn save(root: &Path, args: SaveArgs) -> Result<()> {
    let store = open(root)?;
    let format = match args.format {
        ArchiveFormat::Docker => SaveFormat::Docker,
        ArchiveFormat::Oci => SaveFormat::Oci,
    };
    write_output(args.output.as_deref(), "the archive", |out| {
        let progress = bar("Saving", None);
        strata_image::save(
            &store,
            &args.images,
            format,
            ProgressWriter {
                inner: out,
                bar: progress.clone(),
            },
        )?;
        progress.finish_and_clear();
        Ok(())
    })
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from a tar archive file instead of STDIN
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

pub fn load(root: &Path, args: LoadArgs) -> Result<()> {
    let (reader, total): (Box<dyn Read>, Option<u64>) = match &args.input {
        Some(path) if path != Path::new("-") => {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let size = file.metadata().ok().map(|m| m.len());
            (Box::new(file), size)
        }
        _ => {
            if io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty; use -i FILE or redirect");
            }
            (Box::new(io::stdin()), None)
        }
    };
    let store = open(root)?;
    let progress = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        bar("Loading", total)
    };
    let reader = io::BufReader::with_capacity(
        1 << 20,
        ProgressReader {
            inner: reader,
            bar: progress.clone(),
        },
    );
    let loaded = strata_image::load(&store, reader);
    progress.finish_and_clear();
    let loaded = loaded.context("loading the archive")?;
    if !args.quiet {
        for image in loaded {
            for (name, old) in &image.displaced {
                println!(
                    "The image {} already exists, renaming the old one with ID {old} to empty string",
                    name.familiar_string()
                );
            }
            if image.names.is_empty() {
                println!("Loaded image ID: {}", image.id);
            }
            for name in &image.names {
                println!("Loaded image: {}", name.familiar_string());
            }
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct DfArgs {
    /// Pretty-print with a Go template
    #[arg(long)]
    format: Option<String>,
}

pub fn system_df(root: &Path, args: DfArgs) -> Result<()> {
    let store = open(root)?;
    let usage = strata_image::gc::disk_usage(&store)?;
    let percent = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
    let reclaimable = usage.untagged_only_bytes;
    let values = vec![
        json!({
            "Type": "Images",
            "TotalCount": usage.images.to_string(),
            "Active": usage.tagged_images.to_string(),
            "Size": human::human_size(usage.image_bytes),
            "Reclaimable": format!("{} ({}%)", human::human_size(reclaimable), percent(reclaimable, usage.image_bytes)),
        }),
        json!({
            "Type": "Unreferenced blobs",
            "TotalCount": usage.unreferenced_blobs.to_string(),
            "Active": "0",
            "Size": human::human_size(usage.unreferenced_bytes),
            "Reclaimable": format!(
                "{} ({}%)",
                human::human_size(usage.unreferenced_bytes),
                percent(usage.unreferenced_bytes, usage.unreferenced_bytes)
            ),
        }),
    ];
    let headers = json!({"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"});
    let default_table =
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
    print_list(args.format.as_deref(), default_table, &values, &headers)
}

#[derive(Args)]
pub struct PruneArgs {
    /// Also remove untagged (dangling) images
    #[arg(short, long)]
    all: bool,
    /// Show what would be removed, remove nothing
    #[arg(long)]
    dry_run: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn system_prune(root: &Path, args: PruneArgs) -> Result<()> {
    let store = open(root)?;
    if !args.force && !args.dry_run && io::stdin().is_terminal() {
        eprint!(
            "WARNING! This will remove:\n  - unreferenced blobs and partial downloads\n{}Are you sure you want to continue? [y/N] ",
            if args.all {
                "  - all untagged images\n"
            } else {
                ""
            }
        );
        let mut answer = String::new();
        io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(());
        }
    }
    let report = strata_image::gc::prune(
        &store,
        strata_image::gc::PruneOptions {
            dry_run: args.dry_run,
            dangling_images: args.all,
        },
    )?;
    let verb = if args.dry_run {
        "Would delete"
    } else {
        "Deleted"
    };
    for id in &report.images {
        println!("{verb} image: {id}");
    }
    for (digest, size) in &report.blobs {
        println!("{verb} blob: {digest} ({})", human::human_size(*size));
    }
    for chain in &report.snapshots {
        println!("{verb} snapshot: {chain}");
    }
    let reclaimed = if args.dry_run {
        report.blobs.iter().map(|(_, s)| s).sum::<u64>()
    } else {
        report.reclaimed_bytes()
    };
    println!("Total reclaimed space: {}", human::human_size(reclaimed));
    Ok(())
}

#[derive(Args)]
pub struct BuilderPruneArgs {
    /// Accepted for Docker compatibility: every build cache record is removed either way
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation (strata never prompts here)
    #[arg(short, long)]
    force: bool,
}

/// `strata builder prune`: forgets every build cache record, then runs the store GC so the
/// layers and snapshots only the cache held go too. Images and their snapshots stay.
pub fn builder_prune(root: &Path, args: BuilderPruneArgs) -> Result<()> {
    let _ = (args.all, args.force);
    let store = open(root)?;
    let records = store.update::<_, anyhow::Error>(|catalog| {
        let n = catalog.build_cache.len();
        catalog.build_cache.clear();
        Ok(n)
    })?;
    // The persisted context file checksums (strata_build::cache::ChecksumCache) are build
    // cache too: a pruned builder hashes its context afresh, as BuildKit does after a prune.
    let checksums = root.join("build-cache/checksums");
    match std::fs::remove_dir_all(&checksums) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", checksums.display())),
    }
    let report = strata_image::gc::prune(&store, strata_image::gc::PruneOptions::default())?;
    println!(
        "Deleted build cache records: {records}, layers: {}, snapshots: {}",
        report.blobs.len(),
        report.snapshots.len()
    );
    println!(
        "Total reclaimed space: {}",
        human::human_size(report.reclaimed_bytes())
    );
    Ok(())
}

#[derive(Args)]
pub struct UnpackArgs {
    image: String,
    /// Directory to unpack into (created if missing)
    dir: PathBuf,
}

pub fn unpack(root: &Path, args: UnpackArgs) -> Result<()> {
    let store = open(root)?;
    strata_image::unpack(&store, &args.image, &args.dir)?;
    Ok(())
}

pub fn debug_digest(file: &Path) -> Result<()> {
    let input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut reader = strata_oci::DigestReader::new(input, strata_oci::Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    while reader
        .read(&mut buf)
        .with_context(|| format!("reading {}", file.display()))?
        > 0
    {}
    let (digest, size) = reader.finish();
    println!("{digest} {size}");
    Ok(())
}

pub fn debug_apply_layer(layer: &Path, dir: &Path) -> Result<()> {
    let input =
        std::fs::File::open(layer).with_context(|| format!("opening {}", layer.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stats = strata_layer::apply_layer(
        dir,
        io::BufReader::with_capacity(1 << 20, input),
        &strata_layer::ApplyOptions::default(),
    )?;
    eprintln!("applied {} entries, {} bytes", stats.entries, stats.bytes);
    Ok(())
}

pub fn debug_snapshots(root: &Path, image: &str) -> Result<()> {
    let store = open(root)?;
    let image = StoredImage::resolve(&store, &store.catalog()?, image)?;
    let dirs = strata_image::snapshot::prepare(&store, &image)?;
    let lowerdir: Vec<String> = dirs.iter().rev().map(|d| d.display().to_string()).collect();
    println!("{}", lowerdir.join(":"));
    Ok(())
}
