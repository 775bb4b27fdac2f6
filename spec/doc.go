// Package spec holds the executable isolation specs: Ginkgo specs that take a RuntimeClass as
// their parameter and measure, on a real cluster, what a pod of that class can see and do —
// its own kernel, confined limits, no noisy neighbour, a crash that stays in its pod, and the
// same behaviour as runc for an ordinary application. Nothing in them is specific to podvm: any
// VM runtime (Kata, say) should pass the same specs unchanged, and runc must fail the isolation
// ones. See docs/specs.md for what each spec asserts and how to run it.
package spec
