//! Per-field patch facts of the built-in kinds: the strategic-merge strategy and merge key (Go `patchStrategy` /
//! `patchMergeKey` tags) and the server-side-apply shape (`+listType`, `+listMapKey`, `+mapType`). A type is named
//! by its Go type name; a field missing from the table has no strategy, is a map or struct merged key by key, or a
//! list replaced (SMP) / owned (SSA) whole, which is also what every field of an unknown kind gets.

/// How strategic merge patch treats a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Smp {
    None,
    /// `patchStrategy:"merge"`: list items matched by this key ("" for a list of primitives, which is unioned).
    Merge(&'static str),
    /// `patchStrategy:"replace"`: the patch value replaces the field whole.
    Replace,
}

/// The shape server-side apply gives a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// A struct or map merged field by field (also the default).
    Struct,
    /// A map owned as a whole (`+mapType=atomic`).
    AtomicMap,
    /// A list owned as a whole (the default for lists).
    AtomicList,
    /// A list of primitives owned value by value (`+listType=set`).
    Set,
    /// A list of objects owned item by item, identified by these keys (`+listType=map`).
    Keyed(&'static [&'static str]),
}

#[derive(Debug)]
pub(super) struct Field {
    parent: &'static str,
    name: &'static str,
    /// The Go type of the field's value (of its items for a list), "" when nothing below it is in the table.
    pub(super) ty: &'static str,
    pub(super) smp: Smp,
    pub(super) shape: Shape,
}

const fn f(parent: &'static str, name: &'static str, ty: &'static str, smp: Smp, shape: Shape) -> Field {
    Field {
        parent,
        name,
        ty,
        smp,
        shape,
    }
}

const NO_FACTS: Field = f("", "", "", Smp::None, Shape::Struct);
const OBJECT_META: Field = f("", "metadata", "ObjectMeta", Smp::None, Shape::Struct);

/// The Go type of a built-in kind, None for custom resources and kinds this table does not know.
pub(super) fn root_type(group: &str, kind: &str) -> Option<&'static str> {
    KINDS.iter().find(|(g, k)| *g == group && *k == kind).map(|(_, k)| *k)
}

/// The facts of field `name` of Go type `parent` ("" = untyped: no facts below).
pub(super) fn field(parent: &str, name: &str) -> &'static Field {
    if parent.is_empty() {
        return &NO_FACTS;
    }
    // Every `metadata` of a built-in type is an ObjectMeta (its lists carry facts), so the table leaves them out.
    if name == "metadata" {
        return &OBJECT_META;
    }
    FIELDS
        .binary_search_by(|f| (f.parent, f.name).cmp(&(parent, name)))
        .map_or(&NO_FACTS, |i| &FIELDS[i])
}

// Generated from the `patchStrategy`/`patchMergeKey` tags and `+listType`/`+listMapKey`/`+mapType` markers of
// kubernetes/api types.go (core, apps, batch, networking, discovery, rbac, policy, autoscaling, coordination,
// storage, scheduling, events, certificates, admissionregistration, node at commit 10b39a39; metav1.ObjectMeta by
// hand) by crates/apiserver/tools/gen_patch_schema.py: only the fields that carry such facts or lead to a type that
// does. Sorted by (type, field) for binary search.
#[rustfmt::skip]
pub(super) const FIELDS: &[Field] = &[
    f("CSIDriver", "spec", "CSIDriverSpec", Smp::None, Shape::Struct),
    f("CSIDriverSpec", "volumeLifecycleModes", "", Smp::None, Shape::Set),
    f("CSINode", "spec", "CSINodeSpec", Smp::None, Shape::Struct),
    f("CSINode", "status", "CSINodeStatus", Smp::None, Shape::Struct),
    f("CSINodeSpec", "drivers", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("CSINodeStatus", "storageHealth", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("CertificateSigningRequest", "status", "CertificateSigningRequestStatus", Smp::None, Shape::Struct),
    f("CertificateSigningRequestStatus", "conditions", "", Smp::None, Shape::Keyed(&["type"])),
    f("ComponentStatus", "conditions", "", Smp::Merge("type"), Shape::Keyed(&["type"])),
    f("Container", "env", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("Container", "ports", "", Smp::Merge("containerPort"), Shape::Keyed(&["containerPort", "protocol"])),
    f("Container", "resources", "ResourceRequirements", Smp::None, Shape::Struct),
    f("Container", "restartPolicyRules", "ContainerRestartRule", Smp::None, Shape::AtomicList),
    f("Container", "volumeDevices", "", Smp::Merge("devicePath"), Shape::Keyed(&["devicePath"])),
    f("Container", "volumeMounts", "VolumeMount", Smp::Merge("mountPath"), Shape::Keyed(&["mountPath"])),
    f("ContainerRestartRule", "exitCodes", "ContainerRestartRuleOnExitCodes", Smp::None, Shape::Struct),
    f("ContainerRestartRuleOnExitCodes", "values", "", Smp::None, Shape::Set),
    f("ContainerStatus", "allocatedResourcesStatus", "ResourceStatus", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("ContainerStatus", "resources", "ResourceRequirements", Smp::None, Shape::Struct),
    f("ContainerStatus", "volumeMounts", "", Smp::Merge("mountPath"), Shape::Keyed(&["mountPath"])),
    f("CronJob", "spec", "CronJobSpec", Smp::None, Shape::Struct),
    f("CronJobSpec", "jobTemplate", "JobTemplateSpec", Smp::None, Shape::Struct),
    f("DaemonSet", "spec", "DaemonSetSpec", Smp::None, Shape::Struct),
    f("DaemonSet", "status", "DaemonSetStatus", Smp::None, Shape::Struct),
    f("DaemonSetSpec", "template", "PodTemplateSpec", Smp::None, Shape::Struct),
    f("DaemonSetStatus", "conditions", "", Smp::Merge("type"), Shape::Keyed(&["type"])),
    f("Deployment", "spec", "DeploymentSpec", Smp::None, Shape::Struct),
    f("Deployment", "status", "DeploymentStatus", Smp::None, Shape::Struct),
    f("DeploymentSpec", "template", "PodTemplateSpec", Smp::None, Shape::Struct),
    f("DeploymentStatus", "conditions", "", Smp::Merge("type"), Shape::Keyed(&["type"])),
    f("Endpoint", "addresses", "", Smp::None, Shape::Set),
    f("EndpointSlice", "endpoints", "Endpoint", Smp::None, Shape::AtomicList),
    f("EphemeralContainer", "env", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("EphemeralContainer", "ports", "", Smp::Merge("containerPort"), Shape::Keyed(&["containerPort", "protocol"])),
    f("EphemeralContainer", "resources", "ResourceRequirements", Smp::None, Shape::Struct),
    f("EphemeralContainer", "restartPolicyRules", "ContainerRestartRule", Smp::None, Shape::AtomicList),
    f("EphemeralContainer", "volumeDevices", "", Smp::Merge("devicePath"), Shape::Keyed(&["devicePath"])),
    f("EphemeralContainer", "volumeMounts", "VolumeMount", Smp::Merge("mountPath"), Shape::Keyed(&["mountPath"])),
    f("EphemeralContainerCommon", "env", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("EphemeralContainerCommon", "ports", "", Smp::Merge("containerPort"), Shape::Keyed(&["containerPort", "protocol"])),
    f("EphemeralContainerCommon", "resources", "ResourceRequirements", Smp::None, Shape::Struct),
    f("EphemeralContainerCommon", "restartPolicyRules", "ContainerRestartRule", Smp::None, Shape::AtomicList),
    f("EphemeralContainerCommon", "volumeDevices", "", Smp::Merge("devicePath"), Shape::Keyed(&["devicePath"])),
    f("EphemeralContainerCommon", "volumeMounts", "VolumeMount", Smp::Merge("mountPath"), Shape::Keyed(&["mountPath"])),
    f("EphemeralVolumeSource", "volumeClaimTemplate", "PersistentVolumeClaimTemplate", Smp::None, Shape::Struct),
    f("Job", "spec", "JobSpec", Smp::None, Shape::Struct),
    f("Job", "status", "JobStatus", Smp::None, Shape::Struct),
    f("JobSchedulingConfiguration", "resourceClaims", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("JobSpec", "podFailurePolicy", "PodFailurePolicy", Smp::None, Shape::Struct),
    f("JobSpec", "scheduling", "JobSchedulingConfiguration", Smp::None, Shape::Struct),
    f("JobSpec", "template", "PodTemplateSpec", Smp::None, Shape::Struct),
    f("JobStatus", "conditions", "", Smp::Merge("type"), Shape::AtomicList),
    f("JobStatus", "uncountedTerminatedPods", "UncountedTerminatedPods", Smp::None, Shape::Struct),
    f("JobTemplateSpec", "spec", "JobSpec", Smp::None, Shape::Struct),
    f("MutatingAdmissionPolicy", "spec", "MutatingAdmissionPolicySpec", Smp::None, Shape::Struct),
    f("MutatingAdmissionPolicySpec", "matchConditions", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("MutatingWebhook", "matchConditions", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("MutatingWebhookConfiguration", "webhooks", "MutatingWebhook", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("Namespace", "status", "NamespaceStatus", Smp::None, Shape::Struct),
    f("NamespaceStatus", "conditions", "", Smp::Merge("type"), Shape::Keyed(&["type"])),
    f("Node", "spec", "NodeSpec", Smp::None, Shape::Struct),
    f("Node", "status", "NodeStatus", Smp::None, Shape::Struct),
    f("NodeAllocatableResourceClaimStatus", "containers", "", Smp::None, Shape::Set),
    f("NodeAllocatableResourceClaimStatus", "mapping", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("NodeAllocatableResourceClaimStatus", "overhead", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("NodePodPreemptionPolicy", "disableResizePreemption", "", Smp::None, Shape::Set),
    f("NodeSpec", "podCIDRs", "", Smp::Merge(""), Shape::Set),
    f("NodeSpec", "podPreemptionPolicy", "NodePodPreemptionPolicy", Smp::None, Shape::Struct),
    f("NodeStatus", "addresses", "", Smp::Merge("type"), Shape::Keyed(&["type"])),
    f("NodeStatus", "conditions", "", Smp::Merge("type"), Shape::Keyed(&["type"])),
    f("ObjectMeta", "finalizers", "", Smp::Merge(""), Shape::Set),
    f("ObjectMeta", "ownerReferences", "", Smp::Merge("uid"), Shape::Keyed(&["uid"])),
    f("PersistentVolumeClaim", "status", "PersistentVolumeClaimStatus", Smp::None, Shape::Struct),
    f("PersistentVolumeClaimStatus", "conditions", "", Smp::Merge("type"), Shape::Keyed(&["type"])),
    f("PersistentVolumeClaimStatus", "healthStatus", "VolumeHealthStatus", Smp::None, Shape::Struct),
    f("Pod", "spec", "PodSpec", Smp::None, Shape::Struct),
    f("Pod", "status", "PodStatus", Smp::None, Shape::Struct),
    f("PodCertificateRequest", "status", "PodCertificateRequestStatus", Smp::None, Shape::Struct),
    f("PodCertificateRequestStatus", "conditions", "", Smp::Merge("type"), Shape::Keyed(&["type"])),
    f("PodDisruptionBudget", "spec", "PodDisruptionBudgetSpec", Smp::None, Shape::Struct),
    f("PodDisruptionBudget", "status", "PodDisruptionBudgetStatus", Smp::None, Shape::Struct),
    f("PodDisruptionBudgetSpec", "selector", "", Smp::Replace, Shape::AtomicMap),
    f("PodDisruptionBudgetStatus", "conditions", "", Smp::Merge("type"), Shape::Keyed(&["type"])),
    f("PodFailurePolicy", "rules", "PodFailurePolicyRule", Smp::None, Shape::AtomicList),
    f("PodFailurePolicyOnExitCodesRequirement", "values", "", Smp::None, Shape::Set),
    f("PodFailurePolicyRule", "onExitCodes", "PodFailurePolicyOnExitCodesRequirement", Smp::None, Shape::Struct),
    f("PodSpec", "containers", "Container", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("PodSpec", "ephemeralContainers", "EphemeralContainer", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("PodSpec", "evictionResponders", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("PodSpec", "hostAliases", "", Smp::Merge("ip"), Shape::Keyed(&["ip"])),
    f("PodSpec", "imagePullSecrets", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("PodSpec", "initContainers", "Container", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("PodSpec", "nodeSelector", "", Smp::None, Shape::AtomicMap),
    f("PodSpec", "resourceClaims", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("PodSpec", "resources", "ResourceRequirements", Smp::None, Shape::Struct),
    f("PodSpec", "schedulingGates", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("PodSpec", "topologySpreadConstraints", "", Smp::Merge("topologyKey"), Shape::Keyed(&["topologyKey", "whenUnsatisfiable"])),
    f("PodSpec", "volumes", "Volume", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("PodStatus", "conditions", "", Smp::Merge("type"), Shape::Keyed(&["type"])),
    f("PodStatus", "containerStatuses", "ContainerStatus", Smp::None, Shape::AtomicList),
    f("PodStatus", "ephemeralContainerStatuses", "ContainerStatus", Smp::None, Shape::AtomicList),
    f("PodStatus", "hostIPs", "", Smp::Merge("ip"), Shape::AtomicList),
    f("PodStatus", "initContainerStatuses", "ContainerStatus", Smp::None, Shape::AtomicList),
    f("PodStatus", "nodeAllocatableResourceClaimStatuses", "NodeAllocatableResourceClaimStatus", Smp::Merge("resourceClaimName"), Shape::Keyed(&["resourceClaimName"])),
    f("PodStatus", "podIPs", "", Smp::Merge("ip"), Shape::Keyed(&["ip"])),
    f("PodStatus", "resourceClaimStatuses", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("PodStatus", "resources", "ResourceRequirements", Smp::None, Shape::Struct),
    f("PodStatus", "volumeHealth", "PodVolumeHealth", Smp::None, Shape::Keyed(&["name"])),
    f("PodTemplate", "template", "PodTemplateSpec", Smp::None, Shape::Struct),
    f("PodTemplateSpec", "spec", "PodSpec", Smp::None, Shape::Struct),
    f("PodVolumeHealth", "healthConditions", "", Smp::Merge("status"), Shape::Keyed(&["status", "reason"])),
    f("ReplicaSet", "spec", "ReplicaSetSpec", Smp::None, Shape::Struct),
    f("ReplicaSet", "status", "ReplicaSetStatus", Smp::None, Shape::Struct),
    f("ReplicaSetSpec", "template", "PodTemplateSpec", Smp::None, Shape::Struct),
    f("ReplicaSetStatus", "conditions", "", Smp::Merge("type"), Shape::Keyed(&["type"])),
    f("ReplicationController", "spec", "ReplicationControllerSpec", Smp::None, Shape::Struct),
    f("ReplicationController", "status", "ReplicationControllerStatus", Smp::None, Shape::Struct),
    f("ReplicationControllerSpec", "selector", "", Smp::None, Shape::AtomicMap),
    f("ReplicationControllerSpec", "template", "PodTemplateSpec", Smp::None, Shape::Struct),
    f("ReplicationControllerStatus", "conditions", "", Smp::Merge("type"), Shape::Keyed(&["type"])),
    f("ResourceRequirements", "claims", "", Smp::None, Shape::Keyed(&["name"])),
    f("ResourceStatus", "resources", "", Smp::None, Shape::Keyed(&["resourceID"])),
    f("RuntimeClass", "scheduling", "Scheduling", Smp::None, Shape::Struct),
    f("Scheduling", "nodeSelector", "", Smp::None, Shape::AtomicMap),
    f("Service", "spec", "ServiceSpec", Smp::None, Shape::Struct),
    f("Service", "status", "ServiceStatus", Smp::None, Shape::Struct),
    f("ServiceAccount", "secrets", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("ServiceCIDR", "status", "ServiceCIDRStatus", Smp::None, Shape::Struct),
    f("ServiceCIDRStatus", "conditions", "", Smp::Merge("type"), Shape::Keyed(&["type"])),
    f("ServiceSpec", "ports", "", Smp::Merge("port"), Shape::Keyed(&["port", "protocol"])),
    f("ServiceSpec", "selector", "", Smp::None, Shape::AtomicMap),
    f("ServiceStatus", "conditions", "", Smp::Merge("type"), Shape::Keyed(&["type"])),
    f("StatefulSet", "spec", "StatefulSetSpec", Smp::None, Shape::Struct),
    f("StatefulSet", "status", "StatefulSetStatus", Smp::None, Shape::Struct),
    f("StatefulSetSpec", "template", "PodTemplateSpec", Smp::None, Shape::Struct),
    f("StatefulSetSpec", "volumeClaimTemplates", "PersistentVolumeClaim", Smp::None, Shape::AtomicList),
    f("StatefulSetStatus", "conditions", "", Smp::Merge("type"), Shape::Keyed(&["type"])),
    f("UncountedTerminatedPods", "failed", "", Smp::None, Shape::Set),
    f("UncountedTerminatedPods", "succeeded", "", Smp::None, Shape::Set),
    f("ValidatingAdmissionPolicy", "spec", "ValidatingAdmissionPolicySpec", Smp::None, Shape::Struct),
    f("ValidatingAdmissionPolicy", "status", "ValidatingAdmissionPolicyStatus", Smp::None, Shape::Struct),
    f("ValidatingAdmissionPolicyBinding", "spec", "ValidatingAdmissionPolicyBindingSpec", Smp::None, Shape::Struct),
    f("ValidatingAdmissionPolicyBindingSpec", "validationActions", "", Smp::None, Shape::Set),
    f("ValidatingAdmissionPolicySpec", "matchConditions", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("ValidatingAdmissionPolicySpec", "variables", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("ValidatingAdmissionPolicyStatus", "conditions", "", Smp::None, Shape::Keyed(&["type"])),
    f("ValidatingWebhook", "matchConditions", "", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("ValidatingWebhookConfiguration", "webhooks", "ValidatingWebhook", Smp::Merge("name"), Shape::Keyed(&["name"])),
    f("Volume", "ephemeral", "EphemeralVolumeSource", Smp::None, Shape::Struct),
    f("VolumeHealthStatus", "healthConditions", "", Smp::Merge("status"), Shape::Keyed(&["status", "reason"])),
    f("VolumeMount", "bindMountOptions", "", Smp::None, Shape::Set),
    f("VolumeSource", "ephemeral", "EphemeralVolumeSource", Smp::None, Shape::Struct),
];

/// Built-in kinds: (group, kind); each kind's Go type has the kind's name.
#[rustfmt::skip]
pub(super) const KINDS: &[(&str, &str)] = &[
    ("", "Binding"),
    ("", "ComponentStatus"),
    ("", "ConfigMap"),
    ("", "Endpoints"),
    ("", "Event"),
    ("", "LimitRange"),
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "PersistentVolumeClaim"),
    ("", "Pod"),
    ("", "PodTemplate"),
    ("", "RangeAllocation"),
    ("", "ReplicationController"),
    ("", "ResourceQuota"),
    ("", "Secret"),
    ("", "Service"),
    ("", "ServiceAccount"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apps", "ControllerRevision"),
    ("apps", "DaemonSet"),
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("autoscaling", "HorizontalPodAutoscaler"),
    ("autoscaling", "Scale"),
    ("batch", "CronJob"),
    ("batch", "Job"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("certificates.k8s.io", "ClusterTrustBundle"),
    ("certificates.k8s.io", "PodCertificateRequest"),
    ("coordination.k8s.io", "Lease"),
    ("discovery.k8s.io", "EndpointSlice"),
    ("events.k8s.io", "Event"),
    ("networking.k8s.io", "IPAddress"),
    ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "IngressClass"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("networking.k8s.io", "ServiceCIDR"),
    ("node.k8s.io", "RuntimeClass"),
    ("policy", "Eviction"),
    ("policy", "PodDisruptionBudget"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "CSIStorageCapacity"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("storage.k8s.io", "VolumeAttributesClass"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_sorted_for_binary_search() {
        assert!(
            FIELDS
                .windows(2)
                .all(|w| (w[0].parent, w[0].name) < (w[1].parent, w[1].name))
        );
    }

    #[test]
    fn walks_from_a_deployment_to_container_ports() {
        let spec = field(root_type("apps", "Deployment").unwrap(), "spec");
        let template = field(spec.ty, "template");
        let pod = field(template.ty, "spec");
        let containers = field(pod.ty, "containers");
        assert_eq!(containers.smp, Smp::Merge("name"));
        let ports = field(containers.ty, "ports");
        assert_eq!(ports.smp, Smp::Merge("containerPort"));
        assert_eq!(ports.shape, Shape::Keyed(&["containerPort", "protocol"]));
        assert_eq!(field(pod.ty, "tolerations").smp, Smp::None);
        assert_eq!(field("ObjectMeta", "finalizers").smp, Smp::Merge(""));
        assert!(root_type("cert-manager.io", "Certificate").is_none());
    }
}
