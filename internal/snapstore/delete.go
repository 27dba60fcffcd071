package snapstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Delete removes snapshot id from the store: its manifest first, then
// every other object named after it (the memory, the state and each
// working set version, also those a publication cut short left without a
// manifest). The manifest goes first because it is the one pointer to the
// rest: a reader that finds no manifest does not start, so none starts
// from a manifest naming objects already gone, and a Delete stopped
// halfway leaves objects no reader uses, removed by the next Delete. A
// reader that read the manifest before gets errors for the chunks it had
// not fetched yet (lazymem answers EIO), never a wrong page. Deleting a
// snapshot the store does not hold is not an error.
//
// Call it once no publication of the snapshot runs anywhere: an upload
// under way would leave its objects, or a manifest, behind.
func (s *Store) Delete(ctx context.Context, id string) error {
	if id == "" || strings.Contains(id, ".") {
		return fmt.Errorf("delete snapshot %q from bucket %s: not a snapshot ID", id, s.bucket)
	}
	if err := s.deleteObject(ctx, id, manifestName(id)); err != nil {
		return err // the manifest stays: nothing else may go
	}
	names, err := s.Objects(ctx, id)
	if err != nil {
		return fmt.Errorf("delete snapshot %s: %w; its objects stay, delete it again", id, err)
	}
	var errs []error
	for _, name := range names {
		errs = append(errs, s.deleteObject(ctx, id, name))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.log.Info("snapshot deleted from the store", "snapshot", id, "bucket", s.bucket)
	return nil
}

// Objects lists the names of the objects the store holds of snapshot id,
// and of those deleted whose marker the object store still keeps. It reads the subjects of the objects' infos from the bucket's
// stream in one call: the object store's own List watches them with a
// consumer, which never ends if they all go between its look and its
// start (a Delete on another node purging the last markers).
func (s *Store) Objects(ctx context.Context, id string) ([]string, error) {
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	prefix := s.metaSubject("")
	info, err := s.stream.Info(cctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, fmt.Errorf("list the objects of bucket %s: %w", s.bucket, err)
	}
	var names []string
	for subject := range info.State.Subjects {
		b, err := base64.URLEncoding.DecodeString(strings.TrimPrefix(subject, prefix))
		// Every object name is the ID, a dot and a suffix, and an ID
		// has no dot: the prefix is this snapshot's alone.
		if err == nil && strings.HasPrefix(string(b), id+".") {
			names = append(names, string(b))
		}
	}
	slices.Sort(names)
	return names, nil
}

// deleteObject deletes object name of snapshot id, if the store holds it:
// its chunks, then the marker the object store leaves in place of its
// info, so that nothing of it stays in the stream.
func (s *Store) deleteObject(ctx context.Context, id, name string) error {
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	err := s.obs.Delete(cctx, name)
	cancel()
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete snapshot %s: delete object %s from bucket %s: %w; it stays, delete the snapshot again", id, name, s.bucket, err)
	}
	cctx, cancel = context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	if err := s.stream.Purge(cctx, jetstream.WithPurgeSubject(s.metaSubject(name))); err != nil {
		// Deleted all the same: a marker of a few hundred bytes stays.
		s.log.Warn("snapshot store: the marker of a deleted object could not be purged", "object", name, "err", err)
	}
	return nil
}
