package guest

import (
	"reflect"
	"testing"
)

func TestParseDependsImage(t *testing.T) {
	tests := []struct {
		name, out, want string
	}{
		{"bookworm", "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n", "linux-image-6.1.0-56-cloud-amd64"},
		{"alternatives and virtual", "linux-image-cloud-amd64\n |Depends: <linux-image-6.1.0-9-cloud-amd64>\n  Depends: foo\n", "linux-image-6.1.0-9-cloud-amd64"},
		{"other deps first", "m\n  Depends: kmod\n  Recommends: linux-image-x\n  Depends: linux-image-6.12.1-cloud-amd64\n", "linux-image-6.12.1-cloud-amd64"},
		{"nothing", "", ""},
		{"unknown package", "W: No packages found\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseDependsImage([]byte(tc.out)); got != tc.want {
				t.Fatalf("parseDependsImage = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseAptShow(t *testing.T) {
	out := `Package: linux-image-6.1.0-56-cloud-amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Depends: kmod, linux-base (>= 4.3~)
Description: Linux 6.1 for x86-64 cloud (signed)
Filename: pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb
Size: 26713492
SHA256: E7D02B943971EDCB8790E256C02CFAB3BCA6C3D37C1BF25392A57C71300615EE

Package: linux-image-6.1.0-56-cloud-amd64
Version: 6.1.190-1
SHA256: 0000
`
	got := parseAptShow([]byte(out))
	want := &aptPackage{
		Version:  "6.1.192-2",
		Filename: "pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb",
		Size:     "26713492",
		SHA256:   "e7d02b943971edcb8790e256c02cfab3bca6c3d37c1bf25392a57c71300615ee",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseAptShow = %+v, want %+v", got, want)
	}
	if name := got.debFileName(); name != "linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb" {
		t.Fatalf("debFileName = %q", name)
	}
	epoch := &aptPackage{Name: "p", Version: "1:2.0"}
	if name := epoch.debFileName(); name != "p_1%3a2.0_amd64.deb" {
		t.Fatalf("debFileName with epoch = %q", name)
	}
}
