//! Image operations over the store: load, save, import, export, tag, remove, inspect, prune.
//! Each is a function of the store and its inputs; the CLI only parses and prints.

mod change;
mod commit;
pub mod document;
mod error;
pub mod gc;
pub mod human;
mod import;
pub mod inspect;
pub mod layer_io;
mod load;
mod remove;
mod save;
pub mod snapshot;

pub use commit::{CommittedImage, NewLayer, commit_image};
pub use error::{ImageError, Result};
pub use import::{ImportOptions, ImportSource, export, import, unpack};
pub use load::{LoadedImage, load, upsert_layer};
pub use remove::{Removal, remove_image, tag};
pub use save::{SaveFormat, save};
