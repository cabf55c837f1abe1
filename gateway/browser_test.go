package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/fixture"
)

// chromium finds the browser scripts/setup.sh installs.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: run scripts/setup.sh (Debian package chromium)")
	return ""
}

// TestConsoleInBrowser drives the console in headless Chromium: a reviewer
// logs in, sees an agent's blocked statement appear without reloading,
// approves it, the agent's retry through keyhole succeeds, the reviewer
// revokes the grant, and the agent is refused again. The statement and
// the token's purpose carry markup: no script may run (no dialog opens).
// Screenshots go to build/console/; the timings to the test log and
// build/console/timings.txt.
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	exe := chromium(t)
	ce := startConsole(t)
	ctx := context.Background()
	shots := fixture.Path(t, "build", "console")
	require.NoError(t, os.MkdirAll(shots, 0o755))

	var dialogs atomic.Int32
	var bctx context.Context
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	// A browser started while CI runs every package's tests on two CPUs
	// once sat for minutes without showing the first page; a browser that
	// does not show the login page within a minute is closed and another
	// started, once.
	for attempt := 1; bctx == nil; attempt++ {
		alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
			chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
			chromedp.NoDefaultBrowserCheck, chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
			chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000))
		b, cancelB := chromedp.NewContext(alloc)
		b, cancelT := context.WithTimeout(b, 3*time.Minute)
		require.NoError(t, chromedp.Listen(b, func(ev any) {
			if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
				dialogs.Add(1)
				t.Errorf("a script ran in the console: dialog %q", d.Message)
				go func() {
					_, _ = chromedp.Call(b, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
				}()
			}
		}))
		shown := make(chan error, 1)
		go func() {
			// The first Do starts the browser, bound to b.
			if err := chromedp.Do(b); err != nil {
				shown <- err
				return
			}
			nctx, cancel := context.WithTimeout(b, time.Minute)
			defer cancel()
			shown <- chromedp.Do(nctx, chromedp.Navigate(ce.base+"/console/"), chromedp.WaitVisible(css(`input[name=user]`)))
		}()
		var err error
		select {
		case err = <-shown:
		case <-time.After(time.Minute + 5*time.Second):
			err = errors.New("no answer")
		}
		if err == nil {
			bctx = b
			defer cancelAlloc()
			defer cancelB()
			defer cancelT()
			break
		}
		cancelT()
		cancelB()
		cancelAlloc()
		if attempt == 2 {
			t.Fatalf("headless Chromium did not show the console's login page, twice: %v", err)
		}
		t.Logf("headless Chromium did not show the console's login page within a minute (%v); starting another", err)
	}
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			buf, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, err
			}
			return chromedp.Void{}, os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644)
		}
	}

	// Log in; the feed page opens its live stream.
	require.NoError(t, chromedp.Do(bctx,
		shot("01-login"),
		chromedp.SendKeys(css(`input[name=user]`), "alice"),
		chromedp.SendKeys(css(`input[name=password]`), reviewerPassword),
		chromedp.Click(css(`form.login button[type=submit]`)),
	))
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			_ = chromedp.Do(bctx, shot("failed-"+strings.ReplaceAll(what, " ", "-")))
			t.Fatalf("%s: %v", what, err)
		}
	}
	step("feed after login", chromedp.WaitVisible(css(`#feed-rows`)))
	step("live stream", chromedp.WaitReady(css(`body[data-live-connected="1"]`)))

	// The agent, with a token whose purpose carries markup, is refused a
	// statement whose alias carries markup.
	tok, err := identity.Mint(ce.key, identity.Claims{Agent: agent, TTL: time.Hour, Purpose: xssPurpose})
	require.NoError(t, err)
	pc, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=require", agent, tok, ce.g.Addr(config.DialectPostgres), ce.up.db.Name))
	require.NoError(t, err)
	defer pc.Close(ctx)
	// The goroutines below poll with pc; they end before it is closed,
	// also when the test fails early (defers run last in, first out).
	var polls sync.WaitGroup
	stopPolls := make(chan struct{})
	defer polls.Wait()
	defer close(stopPolls)
	stopped := func() bool {
		select {
		case <-stopPolls:
			return true
		default:
			return false
		}
	}
	// click clicks sel, again when the live feed re-rendered the node
	// between chromedp finding it and clicking it: the agent's polls
	// below each add an audit row, which the page shows as it comes.
	click := func(sel string) error {
		var err error
		for range 10 {
			if err = chromedp.Do(bctx, chromedp.Click(css(sel))); err == nil || !strings.Contains(err.Error(), "Could not find node") {
				return err
			}
		}
		return err
	}
	stmt := `SELECT email AS "` + xssAlias + `" FROM customers WHERE id = 1`
	denied := time.Now()
	require.Equal(t, "42501", query(pc, stmt))
	require.NoError(t, chromedp.Do(bctx, chromedp.WaitVisible(css(`#feed-rows a.request`))))
	visible := time.Since(denied)
	updated, err := chromedp.Run(bctx, chromedp.AttributeValue(css(`#feed-rows`), "data-updated"))
	require.NoError(t, err)
	assert.True(t, updated.Exists, "the row came by the live stream, not a reload")
	// The live feed may re-render the row while it is read: read until
	// the statement is there (or 5 s have passed).
	// (Eventually polls on a goroutine of its own: what it reads is
	// handed over atomically.)
	var lastText atomic.Value
	lastText.Store("")
	assert.Eventually(t, func() bool {
		text, err := chromedp.Run(bctx, chromedp.Text(css(`#feed-rows pre.stmt`)))
		if err != nil {
			return false
		}
		lastText.Store(text)
		return strings.Contains(text, xssAlias)
	}, 5*time.Second, 50*time.Millisecond)
	stmtText := lastText.Load().(string)
	require.NoError(t, chromedp.Do(bctx, shot("02-feed")))
	assert.Contains(t, stmtText, xssAlias, "the markup is shown as text")

	// Review and approve (the default preset, this statement only).
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Click(css(`#feed-rows a.request`)),
		chromedp.WaitVisible(css(`form.approve`)),
		shot("03-request"),
		chromedp.SendKeys(css(`form.approve input[name=note]`), "browser test: churn report"),
	))
	retried := make(chan time.Time, 1)
	approve := time.Now()
	polls.Go(func() {
		for time.Since(approve) < time.Minute && !stopped() {
			if query(pc, stmt) == "ada@example.com" {
				retried <- time.Now()
				return
			}
			time.Sleep(5 * time.Millisecond) // a poll: the agent sees the grant only by retrying
		}
		close(retried)
	})
	require.NoError(t, click(`form.approve button.primary`))
	require.NoError(t, chromedp.Do(bctx, chromedp.WaitVisible(css(`#grant-rows tr.grant`))))
	okAt, ok := <-retried
	require.True(t, ok, "the agent's retry never succeeded")
	retryOK := okAt.Sub(approve)
	// The live refresh can replace the grant rows between the wait and a
	// read (a replaced node reads as ""): read until the new row shows.
	assert.Eventually(t, func() bool {
		left, err := chromedp.Run(bctx, chromedp.Text(css(`#grant-rows [data-expires]`)))
		return err == nil && strings.Contains(left, "left")
	}, 5*time.Second, 50*time.Millisecond, "the grant shows the time it has left")
	require.NoError(t, chromedp.Do(bctx, shot("04-grants")))

	// Revoke; the agent is refused again.
	refused := make(chan time.Time, 1)
	require.NoError(t, chromedp.Do(bctx, chromedp.SendKeys(css(`form.revoke input[name=note]`), "task done")))
	revoke := time.Now()
	polls.Go(func() {
		for time.Since(revoke) < time.Minute && !stopped() {
			if query(pc, stmt) == "42501" {
				refused <- time.Now()
				return
			}
			time.Sleep(5 * time.Millisecond) // a poll: the agent sees the revocation only by retrying
		}
		close(refused)
	})
	require.NoError(t, click(`form.revoke button`))
	require.NoError(t, chromedp.Do(bctx, chromedp.WaitVisible(chromedp.Search(`//td[contains(., "no grants in force")]`))))
	refusedAt, ok2 := <-refused
	require.True(t, ok2, "the agent was not refused after the revocation")
	refusedAfter := refusedAt.Sub(revoke)

	for _, p := range []string{"requests", "agents", "matrix", "unlabelled", "audit"} {
		require.NoError(t, chromedp.Do(bctx, chromedp.Navigate(ce.base+"/console/"+p), chromedp.WaitVisible(css(`h1`)), shot("05-"+p)))
	}
	require.NoError(t, chromedp.Do(bctx, chromedp.Navigate(ce.base+"/console/agents")))
	agentsText, err := chromedp.Run(bctx, chromedp.Text(css(`#agents`)))
	require.NoError(t, err)
	assert.Contains(t, agentsText, agent)
	assert.Contains(t, agentsText, xssPurpose, "the purpose is shown as text")
	assert.Zero(t, dialogs.Load(), "no injected script ran")

	report := fmt.Sprintf("denial -> request visible in the console: %s\napproval click -> agent's retry succeeds: %s\nrevocation click -> agent refused again: %s\n",
		visible.Round(time.Millisecond), retryOK.Round(time.Millisecond), refusedAfter.Round(time.Millisecond))
	t.Log("\n" + report)
	require.NoError(t, os.WriteFile(filepath.Join(shots, "timings.txt"), []byte(report), 0o644))
	assert.Less(t, visible, 5*time.Second)
	assert.True(t, strings.Contains(report, "->"))
}
