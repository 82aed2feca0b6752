package relay

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// Reasons a recipient is deferred or refused by the relay itself, after
// the vault resolved it.
const (
	// ReasonUpstreamUnavailable defers a recipient the upstream did not
	// take now (a 4xx, a timeout, no connection): retry later.
	ReasonUpstreamUnavailable = "upstream_unavailable"
	// ReasonUpstreamRejected refuses a recipient the upstream refused for
	// good (a 5xx to the transaction).
	ReasonUpstreamRejected = "upstream_rejected"
)

// Send sends one message to contact tokens for tenant, as the principal
// in ctx: the HTTP send API's handler. Per recipient, in request order,
// the result says sent, refused (with a custos.Refuse… code or
// ReasonUpstreamRejected) or deferred (custos.RefuseRateLimited or
// ReasonUpstreamUnavailable). Canaries are sent like any other contact.
//
// An error means nothing was sent: the request was malformed (EINVALID,
// the message included), refused as a whole, or the vault could not
// record it.
func (r *Relay) Send(ctx context.Context, tenant string, req *custos.SendRequest) (*custos.SendResult, error) {
	return r.send(ctx, tenant, req, true)
}

// send is Send; limit false when the recipients were charged to the rate
// limits already (SMTP charges them at RCPT).
func (r *Relay) send(ctx context.Context, tenant string, req *custos.SendRequest, limit bool) (*custos.SendResult, error) {
	// A refusal before the vault is asked is recorded like the vault's own.
	if err := req.Validate(); err != nil {
		return nil, r.v.Reject(ctx, custos.ActionSend, tenant, err)
	}
	var tpl *Template
	var err error
	if req.Template != nil {
		tpl, err = TemplateFromParts(req.Template)
	} else {
		tpl, err = r.state().templates.parse([]byte(req.Message))
	}
	if err != nil {
		return nil, r.v.Reject(ctx, custos.ActionSend, tenant, custos.Prefixed(custos.EINVALID, "message", err))
	}
	st := r.state()
	id := custos.NewID(custos.PrefixMessage)
	res := &custos.SendResult{MessageID: id, Recipients: make([]custos.RecipientResult, len(req.Recipients))}
	for i, tok := range req.Recipients {
		res.Recipients[i].Token = tok
	}
	n := len(req.Recipients)
	if limit {
		n = st.limits.take(limitKey(ctx), tenant, n, r.cfg.Now())
	}
	for i := n; i < len(req.Recipients); i++ {
		res.Recipients[i].Status, res.Recipients[i].Reason = custos.SendDeferred, custos.RefuseRateLimited
	}
	if n > 0 {
		msgID := id + "@" + r.cfg.Hostname // the Message-ID field
		ds, err := r.v.Send(ctx, &vault.Outgoing{
			Tenant:         tenant,
			Upstream:       r.cfg.Upstream.ID,
			List:           req.ListID,
			MessageID:      id,
			Template:       tpl.Digest(),
			Tokens:         req.Recipients[:n],
			RequireConsent: !r.cfg.AllowUnknownConsent,
			Render:         func(c *custos.Contact) ([]byte, error) { return tpl.Render(c, msgID) },
		})
		if err != nil {
			return nil, err
		}
		if len(ds) != n {
			forget(ds)
			return nil, custos.Errorf(custos.EINTERNAL, "vault resolved %d of %d recipients", len(ds), n)
		}
		r.deliverAll(ctx, st.up, ds, res.Recipients[:n])
	}
	for _, rr := range res.Recipients {
		switch rr.Status {
		case custos.SendSent:
			res.Sent++
		case custos.SendRefused:
			res.Refused++
		case custos.SendDeferred:
			res.Deferred++
		}
	}
	return res, nil
}

// deliverAll hands each deliverable recipient of ds to the upstream,
// concurrently up to the upstream's connections, fills out, and drops
// every address and message as it goes.
func (r *Relay) deliverAll(ctx context.Context, up *upstream, ds []vault.Delivery, out []custos.RecipientResult) {
	defer forget(ds)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(len(ds), r.cfg.Upstream.Conns) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ds) {
					return
				}
				out[i] = r.deliverOne(ctx, up, &ds[i])
			}
		})
	}
	wg.Wait()
}

func (r *Relay) deliverOne(ctx context.Context, up *upstream, d *vault.Delivery) custos.RecipientResult {
	rr := custos.RecipientResult{Token: d.Token, Status: custos.SendSent}
	switch {
	case d.Refused != "":
		rr.Status, rr.Reason = custos.SendRefused, d.Refused
	default:
		err := up.deliver(ctx, d.ReturnPath+"@"+r.bounceDomain(), d.To, d.Message)
		if err == nil {
			break
		}
		var ue *upstreamError
		if errors.As(err, &ue) && ue.Permanent {
			rr.Status, rr.Reason = custos.SendRefused, ReasonUpstreamRejected
		} else {
			rr.Status, rr.Reason = custos.SendDeferred, ReasonUpstreamUnavailable
		}
		// err names no address and quotes no upstream text.
		r.logger.WarnContext(ctx, "upstream delivery failed", "token", d.Token, "status", rr.Status, "err", err)
	}
	forget1(d)
	return rr
}

func (r *Relay) bounceDomain() string {
	if r.cfg.BounceDomain != "" {
		return r.cfg.BounceDomain
	}
	return r.cfg.Hostname
}

// forget drops the plaintext the vault handed over: message bytes are
// zeroed, references cleared (a string cannot be zeroed; it is dropped).
func forget(ds []vault.Delivery) {
	for i := range ds {
		forget1(&ds[i])
	}
}

func forget1(d *vault.Delivery) {
	clear(d.Message)
	d.Message, d.To = nil, ""
}

// limitKey is what the per-key rate limit counts against: the request's
// API key, or its principal when it has none.
func limitKey(ctx context.Context) string {
	req := custos.RequestFromContext(ctx)
	switch {
	case req.Key != nil:
		return req.Key.ID
	case req.Principal != nil:
		return req.Principal.ID
	}
	return ""
}

// sendState is what sending keeps across calls: the upstream pool and
// the rate limits, made by [New] and closed by [Relay.Close].
type sendState struct {
	up        *upstream
	limits    *limits
	templates templateCache
}

// templateCache keeps parsed templates by the SHA-256 of the submitted
// message: a pipeline submits one campaign once per batch of recipients,
// and parsing it again was 7 % of the relay's CPU per message. Only small
// messages are kept, and a full cache starts over, so it holds at most
// maxCachedTemplates × maxCachedTemplateBytes of templates.
type templateCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*Template
}

const (
	maxCachedTemplates     = 64
	maxCachedTemplateBytes = 256 << 10
)

func (c *templateCache) parse(raw []byte) (*Template, error) {
	if len(raw) > maxCachedTemplateBytes {
		return ParseTemplate(raw)
	}
	key := sha256.Sum256(raw)
	c.mu.Lock()
	t := c.m[key]
	c.mu.Unlock()
	if t != nil {
		return t, nil
	}
	t, err := ParseTemplate(raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedTemplates {
		c.m = map[[sha256.Size]byte]*Template{}
	}
	c.m[key] = t
	c.mu.Unlock()
	return t, nil
}

// state returns r's send state.
func (r *Relay) state() *sendState { return r.sending }
