# Platform helpers: who owns the mesh (data.config.platform), for the settings
# only the platform may write.
package egressguard.lib

# platform_request: the object is in one of the platform's namespaces, or the
# request's user, or one of its groups, is the platform's.
platform_request if input.namespace in data.config.platform.namespaces

platform_request if input.userInfo.username in data.config.platform.users

platform_request if {
	some group in input.userInfo.groups
	group in data.config.platform.groups
}

# platform_owners says who may write platform-only settings, for messages.
platform_owners := sprintf("the platform's namespaces (%s), users (%s) or groups (%s)", [
	_names(object.get(data.config.platform, "namespaces", [])),
	_names(object.get(data.config.platform, "users", [])),
	_names(object.get(data.config.platform, "groups", [])),
])

_names(list) := concat(", ", list) if count(list) > 0

else := "none"

# root_namespace_violation is EGR405 for the object under review: in Istio's
# root namespace, a VirtualService or DestinationRule exported to the mesh,
# or a Sidecar without a workloadSelector (the mesh's default Sidecar),
# applies to every namespace; written by someone not of the platform (where
# the root namespace is not listed as the platform's). The egress rules check
# such an object like any other. The packages of those kinds report it.
root_namespace_violation := {
	"code": "EGR405",
	"field": "metadata.namespace",
	"message": sprintf("metadata.namespace: a %s in Istio's root namespace %q applies to the whole mesh; only %s may write one", [input.kind.kind, input.namespace, platform_owners]),
} if {
	input.namespace == data.config.platform.rootNamespace
	_mesh_wide
	not platform_request
}

_mesh_wide if {
	input.kind.kind in {"VirtualService", "DestinationRule"}
	_exported_to_mesh(object.get(input.object.spec, "exportTo", []))
}

_mesh_wide if {
	input.kind.kind == "Sidecar"
	not input.object.spec.workloadSelector
}

_exported_to_mesh(exports) if count(exports) == 0

_exported_to_mesh(exports) if "*" in exports
