package owner

import (
	"os/exec"
	"testing"
)

func TestAlive(t *testing.T) {
	me, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if !me.Alive() {
		t.Fatalf("%v: this process is not alive", me)
	}
	got, rest, ok := Parse(me.String() + "-abc")
	if !ok || got != me || rest != "abc" {
		t.Fatalf("Parse(%q) = %v, %q, %v", me.String()+"-abc", got, rest, ok)
	}
	// The same pid with another start time is another process.
	if (Owner{PID: me.PID, Start: me.Start + 1}).Alive() {
		t.Error("a reused pid counts as the owner")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if (Owner{PID: cmd.Process.Pid}).Alive() {
		t.Errorf("exited process %d counts as alive", cmd.Process.Pid)
	}
}
