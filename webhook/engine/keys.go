package engine

import (
	"sync"

	"google.golang.org/protobuf/reflect/protoreflect"
	"istio.io/api/networking/v1alpha3"

	"github.com/egress-guard/egress-guard/webhook/engine/vm"
)

// schemaKeys holds, ready for the evaluator, every field name of the Istio
// kinds egress-guard reads and of Kubernetes' object metadata and user info,
// so that converting an object does not allocate its keys.
var schemaKeys = sync.OnceValue(func() map[string]vm.Value {
	keys := map[string]vm.Value{}
	for _, name := range []string{
		"apiVersion", "kind", "metadata", "spec", "status",
		"name", "namespace", "generateName", "uid", "resourceVersion", "generation",
		"creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
		"labels", "annotations", "ownerReferences", "finalizers", "controller", "blockOwnerDeletion",
		"username", "groups", "extra",
	} {
		keys[name] = name
	}
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		fields := md.Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			keys[fd.JSONName()] = fd.JSONName()
			switch {
			case fd.IsMap():
				if v := fd.MapValue(); v.Message() != nil {
					walk(v.Message())
				}
			case fd.Message() != nil:
				walk(fd.Message())
			}
		}
	}
	walk((&v1alpha3.VirtualService{}).ProtoReflect().Descriptor())
	walk((&v1alpha3.DestinationRule{}).ProtoReflect().Descriptor())
	walk((&v1alpha3.ServiceEntry{}).ProtoReflect().Descriptor())
	return keys
})
