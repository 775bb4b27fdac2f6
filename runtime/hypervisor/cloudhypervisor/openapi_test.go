package cloudhypervisor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// specPath is Cloud Hypervisor v53.0's API description, as published by
// the project (vmm/src/api/openapi/cloud-hypervisor.yaml).
const specPath = "testdata/cloud-hypervisor-openapi-v53.0.yaml"

// apiSpec validates requests (and the fake VMM's answers) against the
// schema. Objects with declared properties are made strict
// (additionalProperties: false): the published schema leaves them open, and
// a misspelt field would otherwise pass here and be dropped, or refused, by
// the real VMM.
type apiSpec struct {
	doc    *openapi3.T
	router routers.Router
}

var (
	specOnce   sync.Once
	loadedSpec *apiSpec
	specErr    error
)

func loadSpec(t testing.TB) *apiSpec {
	t.Helper()
	specOnce.Do(func() { loadedSpec, specErr = parseSpec() })
	if specErr != nil {
		t.Fatalf("API schema %s: %v", specPath, specErr)
	}
	return loadedSpec
}

func parseSpec() (*apiSpec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("schema does not validate: %w", err)
	}
	seen := map[*openapi3.Schema]bool{}
	for _, ref := range doc.Components.Schemas {
		closeObjects(ref, seen)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &apiSpec{doc: doc, router: router}, nil
}

// closeObjects sets additionalProperties: false on every object schema
// that declares properties and says nothing about others.
func closeObjects(ref *openapi3.SchemaRef, seen map[*openapi3.Schema]bool) {
	if ref == nil || ref.Value == nil || seen[ref.Value] {
		return
	}
	s := ref.Value
	seen[s] = true
	if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
		no := false
		s.AdditionalProperties.Has = &no
	}
	for _, p := range s.Properties {
		closeObjects(p, seen)
	}
	closeObjects(s.Items, seen)
	closeObjects(s.AdditionalProperties.Schema, seen)
	for _, list := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
		for _, r := range list {
			closeObjects(r, seen)
		}
	}
}

// validationOptions: every error at once; a body on an operation that
// takes none is an error (Cloud Hypervisor answers 400 to it); no defaults
// filled in, or a required field that has a default would pass unsent.
func validationOptions() *openapi3filter.Options {
	return &openapi3filter.Options{MultiError: true, RejectWhenRequestBodyNotSpecified: true, SkipSettingDefaults: true}
}

// route finds the operation of a request received by a test server; such a
// request has no scheme or host in its URL, the router wants both.
func (s *apiSpec) route(r *http.Request) (*routers.Route, map[string]string, *http.Request, error) {
	u := *r.URL
	u.Scheme, u.Host = "http", "localhost"
	rr := r.Clone(r.Context())
	rr.URL, rr.Host = &u, "localhost"
	route, params, err := s.router.FindRoute(rr)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s %s is not an operation of the API: %w", r.Method, r.URL.Path, err)
	}
	return route, params, rr, nil
}

// validateRequest checks method, path and body (given separately, since
// the handler has read it) against the schema.
func (s *apiSpec) validateRequest(r *http.Request, body []byte) error {
	route, params, rr, err := s.route(r)
	if err != nil {
		return err
	}
	if len(body) > 0 {
		rr.Body = io.NopCloser(bytes.NewReader(body))
		rr.ContentLength = int64(len(body))
	} else {
		rr.Body, rr.ContentLength = http.NoBody, 0
	}
	in := &openapi3filter.RequestValidationInput{Request: rr, PathParams: params, Route: route, Options: validationOptions()}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		return fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err)
	}
	return nil
}

// validateResponse checks an answer of the fake VMM, so that the fake
// cannot drift from what the real one sends.
func (s *apiSpec) validateResponse(r *http.Request, status int, body []byte) error {
	route, params, rr, err := s.route(r)
	if err != nil {
		return err
	}
	reqIn := &openapi3filter.RequestValidationInput{Request: rr, PathParams: params, Route: route, Options: validationOptions()}
	hdr := http.Header{}
	if len(body) > 0 {
		hdr.Set("Content-Type", "application/json")
	}
	in := &openapi3filter.ResponseValidationInput{RequestValidationInput: reqIn, Status: status, Header: hdr,
		Options: &openapi3filter.Options{MultiError: true, IncludeResponseStatus: false}}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("answer %d to %s %s: %w", status, r.Method, r.URL.Path, err)
	}
	return nil
}

// validateBody checks a request body for op without a server, for the
// pure-function tests.
func (s *apiSpec) validateBody(t testing.TB, method, op string, body []byte) error {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	r, err := http.NewRequest(method, "/api/v1/"+op, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	return s.validateRequest(r, body)
}

// The strictness the tests rely on must itself hold: a misspelt field, a
// value out of the schema's range, a missing required field and a body on
// an operation that takes none all fail; the driver's bodies pass.
func TestSchemaCatchesWhatTheVMMWouldReject(t *testing.T) {
	spec := loadSpec(t)
	good := func() vmConfig { return vmConfigFor(testLaunch("/run/podvm/sb")) }
	mustJSON := func(v any) []byte { return mustMarshal(t, v) }
	tests := []struct {
		name   string
		method string
		op     string
		body   []byte
		want   string // "" means valid
	}{
		{"driver's vm.create", http.MethodPut, "vm.create", mustJSON(good()), ""},
		{"misspelt field", http.MethodPut, "vm.create",
			[]byte(`{"cpus": {"boot_vcpus": 1, "max_vcpus": 1}, "payload": {"kernel": "/k", "comdline": "x"}}`), "comdline"},
		{"unknown top-level field", http.MethodPut, "vm.create",
			[]byte(`{"payload": {"kernel": "/k"}, "memory_mib": 256}`), "memory_mib"},
		{"vsock cid below 3", http.MethodPut, "vm.create", func() []byte {
			c := good()
			c.Vsock.CID = 2
			return mustJSON(c)
		}(), "cid"},
		{"zero boot vcpus", http.MethodPut, "vm.create", func() []byte {
			c := good()
			c.Cpus.BootVCPUs = 0
			return mustJSON(c)
		}(), "boot_vcpus"},
		{"fs without queue size", http.MethodPut, "vm.create",
			[]byte(`{"payload": {"kernel": "/k"}, "fs": [{"tag": "podvm", "socket": "/s", "num_queues": 1}]}`), "queue_size"},
		{"unknown console mode", http.MethodPut, "vm.create",
			[]byte(`{"payload": {"kernel": "/k"}, "serial": {"mode": "Fil"}}`), "mode"},
		{"no payload", http.MethodPut, "vm.create", []byte(`{"cpus": {"boot_vcpus": 1, "max_vcpus": 1}}`), "payload"},
		{"driver's vm.add-net", http.MethodPut, "vm.add-net", mustJSON(netConfigFor(0, netLaunch{MAC: "02:00:00:00:00:01"})), ""},
		{"tap fds in the body", http.MethodPut, "vm.add-net", []byte(`{"mac": "02:00:00:00:00:01", "fds": [3]}`), "fds"},
		{"vm.boot without body", http.MethodPut, "vm.boot", nil, ""},
		{"vm.boot with a body", http.MethodPut, "vm.boot", []byte(`{}`), "body"},
		{"vm.resize zero vcpus", http.MethodPut, "vm.resize", []byte(`{"desired_vcpus": 0}`), "desired_vcpus"},
		{"GET on a PUT operation", http.MethodGet, "vm.boot", nil, "not an operation"},
		{"no such operation", http.MethodPut, "vm.teleport", nil, "not an operation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := spec.validateBody(t, tt.method, tt.op, tt.body)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("valid request rejected: %v", err)
			case tt.want != "" && err == nil:
				t.Errorf("invalid request accepted, want an error about %q", tt.want)
			case tt.want != "" && !containsFold(err.Error(), tt.want):
				t.Errorf("error does not name %q: %v", tt.want, err)
			}
		})
	}
}

func containsFold(s, sub string) bool {
	return bytes.Contains(bytes.ToLower([]byte(s)), bytes.ToLower([]byte(sub)))
}
