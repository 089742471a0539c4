package slackapp

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// Directory answers who is in a Slack user group and what a user's email
// is, through the Web API (usergroups.users.list, users.info), cached for
// a short TTL: membership changes reach changeops within TTL, and a burst
// of clicks costs one lookup.
type Directory struct {
	Client *slack.Client
	TTL    time.Duration
	// now is time.Now, replaced in tests.
	now func() time.Time

	mu     sync.Mutex
	groups map[string]entry[[]string]
	emails map[string]entry[string]
}

type entry[T any] struct {
	v  T
	at time.Time
}

// NewDirectory builds a directory over c with the given TTL.
func NewDirectory(c *slack.Client, ttl time.Duration) *Directory {
	return &Directory{Client: c, TTL: ttl, now: time.Now,
		groups: map[string]entry[[]string]{}, emails: map[string]entry[string]{}}
}

// InGroup says whether user is a member of the user group.
func (d *Directory) InGroup(ctx context.Context, group, user string) (bool, error) {
	members, err := cached(d, d.groups, group, func() ([]string, error) {
		m, err := d.Client.GetUserGroupMembersContext(ctx, group)
		if err != nil {
			return nil, fmt.Errorf("usergroups.users.list %s: %w", group, err)
		}
		return m, nil
	})
	return slices.Contains(members, user), err
}

// Email is the user's email as Slack knows it (empty when hidden).
func (d *Directory) Email(ctx context.Context, user string) (string, error) {
	return cached(d, d.emails, user, func() (string, error) {
		u, err := d.Client.GetUserInfoContext(ctx, user)
		if err != nil {
			return "", fmt.Errorf("users.info %s: %w", user, err)
		}
		return u.Profile.Email, nil
	})
}

// cached returns m[key] while it is younger than the TTL, else load's
// answer, which it keeps. Errors are not cached.
func cached[T any](d *Directory, m map[string]entry[T], key string, load func() (T, error)) (T, error) {
	d.mu.Lock()
	e, ok := m[key]
	d.mu.Unlock()
	if ok && d.now().Sub(e.at) < d.TTL {
		return e.v, nil
	}
	v, err := load()
	if err != nil {
		return v, err
	}
	d.mu.Lock()
	m[key] = entry[T]{v: v, at: d.now()}
	d.mu.Unlock()
	return v, nil
}
