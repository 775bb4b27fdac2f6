// Package ctxend tells whether a context has ended, counting a deadline
// that has passed before the context's own timer fired: a connection
// deadline set from a context's can end an I/O call first, and a caller
// that then asks ctx.Err() gets nil and takes the timeout for an answer.
package ctxend

import (
	"context"
	"time"
)

// Err is ctx.Err(), or context.DeadlineExceeded once ctx's deadline has
// passed.
func Err(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}
