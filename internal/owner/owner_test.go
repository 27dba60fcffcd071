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
	// A name carries the pid and start time, not the boot.
	got, rest, ok := Parse(me.String() + "-abc")
	if !ok || got != (Owner{PID: me.PID, Start: me.Start}) || rest != "abc" {
		t.Fatalf("Parse(%q) = %v, %q, %v", me.String()+"-abc", got, rest, ok)
	}
	if (Owner{PID: me.PID, Start: me.Start, Boot: "another boot"}).Alive() {
		t.Error("an owner of another boot counts as alive")
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
