//! The catalog holds every published schema file, and only valid ones.

use std::path::Path;

use nearby_schemas::published::FILES;
use nearby_schemas::{Catalog, Delivery, DeliveryBatch, FriendshipEvent, LocationEvent, Record};

#[test]
fn every_file_in_avro_dir_is_published_and_embedded() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".avsc"))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = FILES.iter().map(|f| f.file.to_owned()).collect();
    embedded.sort();
    assert_eq!(on_disk, embedded);
    for file in FILES {
        let text = std::fs::read_to_string(dir.join(file.file)).unwrap();
        assert_eq!(
            text, file.avsc,
            "{} differs from what is embedded",
            file.file
        );
    }
}

#[test]
fn the_published_catalog_knows_every_file_and_the_current_versions() {
    let catalog = Catalog::published();
    assert_eq!(catalog.versions().count(), FILES.len());
    for current in [
        LocationEvent::schema(),
        Delivery::schema(),
        DeliveryBatch::schema(),
        FriendshipEvent::schema(),
    ] {
        let known = catalog.by_fingerprint(current.fingerprint()).unwrap();
        assert_eq!(known.name(), current.name());
    }
    let names: Vec<&str> = catalog.versions().map(|v| v.name()).collect();
    assert_eq!(
        names,
        [
            "nearby.v1.LocationEvent",
            "nearby.v1.Delivery",
            "nearby.v1.DeliveryBatch",
            "nearby.v1.FriendshipEvent"
        ]
    );
}

#[test]
fn every_field_and_type_is_documented() {
    fn check(json: &serde_json::Value, path: &str) {
        match json {
            serde_json::Value::Object(map) => {
                let named = matches!(
                    map.get("type").and_then(|t| t.as_str()),
                    Some("record" | "enum")
                );
                if named || map.contains_key("fields") {
                    assert!(map.contains_key("doc"), "{path}: a named type without doc");
                }
                if let Some(fields) = map.get("fields").and_then(|f| f.as_array()) {
                    for field in fields {
                        let name = field["name"].as_str().unwrap();
                        assert!(
                            field.get("doc").is_some(),
                            "{path}.{name}: a field without doc"
                        );
                        check(&field["type"], &format!("{path}.{name}"));
                    }
                }
            }
            serde_json::Value::Array(branches) => {
                for branch in branches {
                    check(branch, path);
                }
            }
            _ => {}
        }
    }
    for file in FILES {
        check(&serde_json::from_str(file.avsc).unwrap(), file.file);
    }
}

#[test]
fn registry_ids_are_checked() {
    let location = FILES[0].avsc;
    let delivery = FILES[1].avsc;
    let mut catalog = Catalog::with_published();
    catalog.register_id(5, location).unwrap();
    catalog.register_id(5, location).unwrap();
    assert!(matches!(
        catalog.register_id(5, delivery),
        Err(nearby_schemas::Error::RegistryIdConflict { id: 5, .. })
    ));
    catalog.register_id(3, location).unwrap();
    assert_eq!(
        catalog.registry_id_of(LocationEvent::schema().fingerprint()),
        Some(3)
    );
    // Registering a known schema does not grow the catalog.
    assert_eq!(catalog.versions().count(), FILES.len());
    assert!(matches!(
        catalog.register_id(9, "{\"type\": \"string\"}"),
        Err(nearby_schemas::Error::InvalidSchema { .. })
    ));
}

#[test]
fn the_readme_lists_every_published_fingerprint() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for version in Catalog::published().versions() {
        let header = version
            .single_object_header()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        let row = format!(
            "| `{}` | `{:#018x}` | `{header}` |",
            version.name(),
            version.fingerprint()
        );
        assert!(readme.contains(&row), "README.md lacks the row {row}");
    }
}
