package checkpoint

// The checkpointer's protocol: the words the manifests that ask for checkpoints, the
// agent that keeps them, `selfkube init` and `selfkube reset` share. Package manifests
// writes them into the pod templates and the checkpointer's DaemonSet; nothing here
// depends on how those are built.
const (
	// AnnotationCheckpoint marks pod templates whose pods the checkpointer keeps
	// running while the API is unreachable; the value names the checkpoint (one per
	// component and node). Only a valid name counts (see ValidName).
	AnnotationCheckpoint = "selfkube.io/checkpoint"
	// AnnotationCheckpointArgs holds arguments, as a JSON map from container name to a
	// list, that a checkpoint's containers get in addition to the pod's.
	AnnotationCheckpointArgs = "selfkube.io/checkpoint-args"
	// AnnotationCheckpointFencePort names the port a checkpoint serves on at the node's
	// address: its hand-back holds new connections there until it stopped listening.
	AnnotationCheckpointFencePort = "selfkube.io/checkpoint-fence-port"
	// AnnotationCheckpointOf and LabelCheckpointOf mark the static pod of a checkpoint,
	// with the checkpoint's name.
	AnnotationCheckpointOf = "selfkube.io/checkpoint-of"
	LabelCheckpointOf      = "selfkube.io/checkpoint-of"

	// CheckpointAPIServer is the name of the apiserver's checkpoint: `selfkube init`
	// waits for it before it stops the temporary control plane.
	CheckpointAPIServer = "kube-apiserver"

	// CheckpointsDir is where the checkpointer keeps the checkpoints on a node.
	CheckpointsDir = "/etc/kubernetes/checkpoints"
	// CheckpointerMetricsPort is the checkpointer's metrics and health port, on the
	// node's loopback address.
	CheckpointerMetricsPort = 10267
)

// StaticPodName is the name of the static pod a checkpoint runs as (the kubelet appends
// the node name), and of its file, with ".yaml", in the kubelet's static-pod directory
// while the checkpoint is active.
func StaticPodName(name string) string { return "checkpoint-" + name }
