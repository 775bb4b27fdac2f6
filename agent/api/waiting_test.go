package api

import "testing"

func TestWaits(t *testing.T) {
	tests := []struct {
		method string
		waits  bool
	}{
		{"WaitProcess", true},
		{"/podvm.agent.v1.AgentService/WaitProcess", true},
		{"/podvm.agent.v1.AgentService/ReadStdout", true},
		{"WriteStdin", true},
		{"/podvm.agent.v1.AgentService/CreateContainer", false},
		{"GuestDetails", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := Waits(tt.method); got != tt.waits {
			t.Errorf("Waits(%q) = %v, want %v", tt.method, got, tt.waits)
		}
	}
}
