package ctxend

import (
	"context"
	"errors"
	"testing"
	"time"
)

// late reports a deadline earlier than the one its timer ends it at.
type late struct {
	context.Context
	deadline time.Time
}

func (c late) Deadline() (time.Time, bool) { return c.deadline, true }

func TestErr(t *testing.T) {
	if err := Err(context.Background()); err != nil {
		t.Errorf("a ctx without a deadline: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if err := Err(ctx); err != nil {
		t.Errorf("a ctx with a deadline ahead: %v", err)
	}
	if err := Err(late{ctx, time.Now()}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a ctx whose deadline passed, its timer not fired: %v", err)
	}
	cancel()
	if err := Err(late{ctx, time.Now().Add(time.Hour)}); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled ctx: %v", err)
	}
}
