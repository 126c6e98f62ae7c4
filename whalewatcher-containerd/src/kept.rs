//! The fields of a container record that its container keeps, decoded
//! without the rest: the OCI spec (about 3 KB a record), the runtime and
//! the extensions are skipped, not copied. The tags are containerd's
//! (`containerd/api/services/containers/v1/containers.proto`).

use std::collections::BTreeMap;

/// A container record's id, labels, image and creation time.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct KeptRecord {
    #[prost(string, tag = "1")]
    pub id: String,
    /// Sorted, as the container's labels are.
    #[prost(btree_map = "string, string", tag = "2")]
    pub labels: BTreeMap<String, String>,
    #[prost(string, tag = "3")]
    pub image: String,
    #[prost(message, optional, tag = "8")]
    pub created_at: Option<prost_types::Timestamp>,
}

/// One message of the record stream (`ListContainerMessage`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct KeptRecordMessage {
    #[prost(message, optional, tag = "1")]
    pub container: Option<KeptRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn a_full_record_decodes_into_its_kept_fields() {
        let full = containerd_client::services::v1::ListContainerMessage {
            container: Some(containerd_client::services::v1::Container {
                id: "web".to_owned(),
                labels: [("b", "2"), ("a", "1")]
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .into(),
                image: "busybox".to_owned(),
                spec: Some(prost_types::Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".to_owned(),
                    value: vec![b'x'; 3000],
                }),
                snapshotter: "overlayfs".to_owned(),
                created_at: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 5,
                }),
                ..Default::default()
            }),
        };
        let kept = KeptRecordMessage::decode(full.encode_to_vec().as_slice())
            .expect("decodes")
            .container
            .expect("a record");
        assert_eq!(kept.id, "web");
        assert_eq!(
            kept.labels.iter().collect::<Vec<_>>(),
            [
                (&"a".to_owned(), &"1".to_owned()),
                (&"b".to_owned(), &"2".to_owned())
            ]
        );
        assert_eq!(kept.image, "busybox");
        assert_eq!(
            kept.created_at.map(|t| (t.seconds, t.nanos)),
            Some((1_700_000_000, 5))
        );
    }
}
