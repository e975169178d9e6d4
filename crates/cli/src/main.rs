//! The `strata` command: parses arguments and dispatches to the library crates.

mod build_cmd;
mod build_progress;
mod client_cmd;
mod commands;
mod output;
mod progress;
mod registry_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "A daemonless container image toolchain",
    max_term_width = 110
)]
struct Cli {
    /// Image store root (default: /var/lib/strata as root, ~/.local/share/strata otherwise).
    /// Like Docker's global flags it comes before the command, which keeps `--root` free for
    /// commands with a root of their own (`strata registry serve --root`).
    #[arg(long, env = "STRATA_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List images
    Images(commands::ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag { source: String, target: String },
    /// Remove one or more images
    Rmi(commands::RmiArgs),
    /// Display detailed information on one or more images
    Inspect(commands::InspectArgs),
    /// Show the history of an image
    History(commands::HistoryArgs),
    /// Import the contents of a tarball or directory to create a filesystem image
    Import(commands::ImportArgs),
    /// Export an image's filesystem as a tar archive
    Export(commands::ExportArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(commands::SaveArgs),
    /// Load images from a tar archive or STDIN
    Load(commands::LoadArgs),
    /// Pull an image from a registry
    Pull(client_cmd::PullArgs),
    /// Push an image to a registry
    Push(client_cmd::PushArgs),
    /// Copy an image between registries, OCI layouts, archives and the local store
    Copy(client_cmd::CopyArgs),
    /// Log in to a registry
    Login(client_cmd::LoginArgs),
    /// Log out from a registry
    Logout(client_cmd::LogoutArgs),
    /// List the tags of a registry repository (docker://NAME)
    Tags(client_cmd::TagsArgs),
    /// Display information on an image in a registry (docker://NAME[:TAG]) without pulling it
    #[command(name = "inspect-remote", hide = true)]
    InspectRemote(client_cmd::RemoteInspectArgs),
    /// Run or manage an OCI distribution registry
    Registry {
        #[command(subcommand)]
        command: registry_cmd::RegistryCommand,
    },
    /// Unpack an image's layers into a directory (its root filesystem)
    Unpack(commands::UnpackArgs),
    /// Build an image from a Dockerfile
    Build(Box<build_cmd::BuildArgs>),
    /// Manage the build cache
    Builder {
        #[command(subcommand)]
        command: BuilderCommand,
    },
    /// Manage the store
    System {
        #[command(subcommand)]
        command: SystemCommand,
    },
    /// Low-level helpers for benchmarks and debugging
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Print the sha256 digest of a file, using the store's digesting path
    Digest { file: PathBuf },
    /// Apply one uncompressed layer tar onto a directory
    ApplyLayer { layer: PathBuf, dir: PathBuf },
    /// Unpack an image's layer snapshots and print them as an overlayfs lowerdir list
    Snapshots { image: String },
}

#[derive(Subcommand)]
enum BuilderCommand {
    /// Remove the build cache (and the layers and snapshots only it kept)
    Prune(commands::BuilderPruneArgs),
}

#[derive(Subcommand)]
enum SystemCommand {
    /// Show store disk usage
    Df(commands::DfArgs),
    /// Remove unreferenced blobs, partial downloads and (with --all) untagged images
    Prune(commands::PruneArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = cli.root.unwrap_or_else(strata_store::Store::default_root);
    let result = match cli.command {
        Command::Images(args) => commands::images(&root, args),
        Command::Tag { source, target } => commands::tag(&root, &source, &target),
        Command::Rmi(args) => commands::rmi(&root, args),
        Command::Inspect(args) => commands::inspect(&root, args),
        Command::History(args) => commands::history(&root, args),
        Command::Import(args) => commands::import(&root, args),
        Command::Export(args) => commands::export(&root, args),
        Command::Save(args) => commands::save(&root, args),
        Command::Load(args) => commands::load(&root, args),
        Command::Unpack(args) => commands::unpack(&root, args),
        Command::Build(args) => build_cmd::build(&root, *args),
        Command::Pull(args) => client_cmd::pull(&root, args),
        Command::Push(args) => client_cmd::push(&root, args),
        Command::Copy(args) => client_cmd::copy(&root, args),
        Command::Login(args) => client_cmd::login(&root, args),
        Command::Logout(args) => client_cmd::logout(&root, args),
        Command::Tags(args) => client_cmd::tags(&root, args),
        Command::InspectRemote(args) => client_cmd::inspect_remote(&root, args),
        Command::Registry { command } => registry_cmd::run(&root, command),
        Command::Debug {
            command: DebugCommand::Digest { file },
        } => commands::debug_digest(&file),
        Command::Debug {
            command: DebugCommand::ApplyLayer { layer, dir },
        } => commands::debug_apply_layer(&layer, &dir),
        Command::Debug {
            command: DebugCommand::Snapshots { image },
        } => commands::debug_snapshots(&root, &image),
        Command::Builder {
            command: BuilderCommand::Prune(args),
        } => commands::builder_prune(&root, args),
        Command::System {
            command: SystemCommand::Df(args),
        } => commands::system_df(&root, args),
        Command::System {
            command: SystemCommand::Prune(args),
        } => commands::system_prune(&root, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
