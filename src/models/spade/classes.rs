//! Class names and colours of the official SPADE datasets, built in so that converted NVlabs
//! checkpoints show names in the painter and accept colour-coded maps. The tables are
//! `assets/classes/*.json`, written by `assets/classes/make_tables.py` from the datasets' own
//! lists (ADE20K objectInfo150 + its palette, COCO-Stuff labels.txt, Cityscapes labels.py).
//!
//! In every table the class id is the network's label channel, as NVlabs feeds it:
//! - ADE20K: the annotation PNG value (NVlabs' `postprocess` shift never takes effect), so channel
//!   0 is "other" (unlabelled) and 1..150 are objectInfo150's classes;
//! - COCO-Stuff: the stuffthingmaps value 0..181 (255 = dontcare);
//! - Cityscapes: the labelIds value 0..34.
use super::config::ClassInfo;

pub const BUILTIN: [&str; 3] = ["ade20k", "cocostuff", "cityscapes"];

/// The built-in class list called `name` ("ade20k", "cocostuff" or "coco", "cityscapes").
pub fn builtin(name: &str) -> Option<Vec<ClassInfo>> {
    let json = match name {
        "ade20k" => include_str!("../../../assets/classes/ade20k.json"),
        "cocostuff" | "coco" => include_str!("../../../assets/classes/cocostuff.json"),
        "cityscapes" => include_str!("../../../assets/classes/cityscapes.json"),
        _ => return None,
    };
    let mut classes: Vec<ClassInfo> = serde_json::from_str(json).expect("built-in class table");
    if name == "ade20k" {
        classes.insert(
            0,
            ClassInfo {
                id: 0,
                name: "other".into(),
                color: [0, 0, 0],
            },
        );
    }
    Some(classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_channel_ordered_and_sized_for_the_presets() {
        for (name, n) in [("ade20k", 151), ("cocostuff", 182), ("cityscapes", 35)] {
            let c = builtin(name).unwrap();
            assert_eq!(c.len(), n, "{name}");
            assert!(
                c.iter().enumerate().all(|(k, c)| c.id as usize == k),
                "{name}: id = channel"
            );
            assert!(c.iter().all(|c| !c.name.is_empty()));
        }
        assert!(builtin("voc").is_none());
    }

    #[test]
    fn ade20k_table_agrees_with_the_demo_maps() {
        let demo: Vec<ClassInfo> =
            serde_json::from_str(include_str!("../../../maps/classes.json")).unwrap();
        let ade = builtin("ade20k").unwrap();
        for d in demo {
            assert_eq!(ade[d.id as usize], d);
        }
    }
}
