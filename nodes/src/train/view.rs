//! `train` in the run report: the job's record (status, events), its meta,
//! and an export's config: what the generic view gathers, drawn its own way.

use crate::view::{generic, View};

pub const VIEW: View = View { name: "train", data: generic, script: include_str!("view.js") };

impl crate::Face for super::Train {
    const VIEW: Option<&'static View> = Some(&VIEW);
}
