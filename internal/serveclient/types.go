package serveclient

// The request and response bodies are package api's (api/types.go), shared
// with the service; what is here is the client's own view of an answer.

// Invocation is an invocation's result and where its time went, from the
// response's X-Snapbpf-* headers.
type Invocation struct {
	// Result is the response body: the function's result.
	Result        []byte
	Start         string  // cold or warm
	RestoreMs     float64 // the cold restore (0 when warm)
	PrefetchBytes int64
	QueueMs       float64 // waiting for an instance
	TotalMs       float64 // the service's own time
	Node          string  // the node that ran it
}
