//! Claiming this node's block through the API: create the block's object, named after the block, and take the
//! next free one on `409 AlreadyExists`. The API server's uniqueness of names is the lock, so agents starting at
//! once on every node need no leader and no retries beyond the next block.

use super::block::{self, PodCIDRBlock, PodCIDRBlockSpec};
use super::plan::{Pool, held, node_cidr};
use ipnet::Ipv4Net;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use weft_model::k8s_openapi::Resource as _;
use weft_model::k8s_openapi::api::core::v1::Node;
use weft_model::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("node {node}: {source}")]
    Api {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("node {0} has no uid")]
    NoUid(String),
    #[error("no free block left in the cluster CIDR for node {0}")]
    Exhausted(String),
}

/// This node's block: the one it already holds (an agent restarting keeps its pods' addresses), else the first
/// free block it manages to create. A node that ends up holding two (two of its agents raced) keeps the lower.
pub async fn claim(client: &Client, pool: &Pool, node: &str) -> Result<Ipv4Net, ClaimError> {
    let failed = |source| ClaimError::Api {
        node: node.to_string(),
        source,
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let blocks: Api<PodCIDRBlock> = Api::all(client.clone());
    let me = nodes.get(node).await.map_err(failed)?;
    let uid = me
        .metadata
        .uid
        .clone()
        .ok_or_else(|| ClaimError::NoUid(node.to_string()))?;
    // Two rounds at most: the second lists what the first created.
    for _ in 0..2 {
        let listed = blocks.list(&ListParams::default()).await.map_err(failed)?.items;
        let mine = held(&listed, node, &uid);
        if let Some((first, surplus)) = mine.split_first() {
            release(&blocks, &listed, surplus).await.map_err(failed)?;
            return Ok(*first);
        }
        // Ranges the cluster gave nodes are taken too (a cluster changing over from its own allocation).
        let mut taken: Vec<Ipv4Net> = listed.iter().filter_map(PodCIDRBlock::cidr).collect();
        taken.extend(
            nodes
                .list(&ListParams::default())
                .await
                .map_err(failed)?
                .items
                .iter()
                .filter_map(node_cidr),
        );
        let mut created = false;
        for cidr in pool.free(&taken) {
            match blocks.create(&PostParams::default(), &new_block(cidr, &me, &uid)).await {
                Ok(_) => {
                    created = true;
                    break;
                }
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(e) => return Err(failed(e)),
            }
        }
        if !created {
            return Err(ClaimError::Exhausted(node.to_string()));
        }
    }
    Err(ClaimError::Exhausted(node.to_string()))
}

/// Deletes the surplus blocks, each only as the version listed (a block freed and claimed by another node in the
/// meantime stays).
async fn release(api: &Api<PodCIDRBlock>, listed: &[PodCIDRBlock], surplus: &[Ipv4Net]) -> Result<(), kube::Error> {
    for cidr in surplus {
        let name = block::name(*cidr);
        let Some(object) = listed.iter().find(|b| b.metadata.name.as_deref() == Some(&name)) else {
            continue;
        };
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: object.metadata.uid.clone(),
                resource_version: object.metadata.resource_version.clone(),
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The block object for `cidr`, owned by the Node `me`.
fn new_block(cidr: Ipv4Net, me: &Node, uid: &str) -> PodCIDRBlock {
    let node = me.metadata.name.clone().unwrap_or_default();
    PodCIDRBlock {
        metadata: ObjectMeta {
            name: Some(block::name(cidr)),
            owner_references: Some(vec![OwnerReference {
                api_version: Node::API_VERSION.to_string(),
                kind: Node::KIND.to_string(),
                name: node.clone(),
                uid: uid.to_string(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: PodCIDRBlockSpec {
            cidr: cidr.to_string(),
            node,
        },
    }
}
