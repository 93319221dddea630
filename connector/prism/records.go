package prism

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// MaxBatchItems is the documented cap of ids per batch/delete and items per
// batch/update request (§8 of the API brief).
const MaxBatchItems = 100

// Operation names of the record endpoints, as RequestInfo.Op reports them.
const (
	opBatchDelete = "batch_delete"
	opBatchUpdate = "batch_update"
)

// ItemResult is the outcome of one id of a batch/delete or batch/update.
type ItemResult struct {
	ID string
	OK bool
	// Error is set when OK is false. NotFound reports Micro's "not found"
	// for the id: the record is gone already (deleted before, by hand or
	// by an earlier send), which a delete may count as done.
	Error    *RowError
	NotFound bool
}

// EncodeDeleteBody is the body of a batch/delete: {"ids":[...]}, byte-stable
// for a given list so that a journaled batch is resent identically.
func EncodeDeleteBody(ids []string) []byte {
	b := make([]byte, 0, 10+len(ids)*39)
	b = append(b, `{"ids":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, id)
	}
	return append(b, "]}"...)
}

// EncodeUpdateBody is the body of a batch/update that sets the same object
// ({"default":{...}}, as the mapping encodes it) on every id:
// {"items":[{"id":...,"default":{...}},...]}.
func EncodeUpdateBody(ids []string, object []byte) []byte {
	inner := bytes.TrimSpace(object)
	// object is {"default":{...}[,"list":{...}]}: each item is that object
	// with "id" first.
	inner = inner[1 : len(inner)-1]
	b := make([]byte, 0, 12+len(ids)*(len(inner)+48))
	b = append(b, `{"items":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = appendJSONString(b, id)
		if len(inner) > 0 {
			b = append(b, ',')
			b = append(b, inner...)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// BatchDelete POSTs body (see EncodeDeleteBody, at most MaxBatchItems ids)
// to /v2/prism/{teamId}/{object}/batch/delete under idempotencyKey, retried
// like an import (same key, same bytes). It returns one ItemResult per id
// of the body, in its order.
func (c *Client) BatchDelete(ctx context.Context, object, idempotencyKey string, body []byte) ([]ItemResult, bool, error) {
	return c.batch(ctx, opBatchDelete, object, "delete", idempotencyKey, body)
}

// BatchUpdate POSTs body (see EncodeUpdateBody) to
// /v2/prism/{teamId}/{object}/batch/update; see BatchDelete.
func (c *Client) BatchUpdate(ctx context.Context, object, idempotencyKey string, body []byte) ([]ItemResult, bool, error) {
	return c.batch(ctx, opBatchUpdate, object, "update", idempotencyKey, body)
}

// batch sends one record batch; replayed reports Micro's
// idempotent-replay header.
func (c *Client) batch(ctx context.Context, op, object, verb, key string, body []byte) (_ []ItemResult, replayed bool, _ error) {
	if !objectRE.MatchString(object) {
		return nil, false, fmt.Errorf("prism: %s: invalid object type %q", op, object)
	}
	if n := len(key); n == 0 || n > 255 {
		return nil, false, fmt.Errorf("prism: %s: idempotency key must be 1-255 characters, got %d", op, n)
	}
	var req struct {
		IDs   []string `json:"ids"`
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, false, fmt.Errorf("prism: %s: body: %w", op, err)
	}
	ids := req.IDs
	for _, it := range req.Items {
		ids = append(ids, it.ID)
	}
	if len(ids) > MaxBatchItems {
		return nil, false, fmt.Errorf("prism: %s: %d ids, more than the %d per request the API takes", op, len(ids), MaxBatchItems)
	}
	if !c.claimKey(key) {
		return nil, false, fmt.Errorf("prism: %s %s: %w", op, key, ErrKeyInUse)
	}
	defer c.releaseKey(key)
	u := c.endpoint("v2", "prism", c.teamID, object, "batch", verb)
	resp, err := c.do(ctx, op, http.MethodPost, u, body, key)
	if err != nil {
		return nil, false, err
	}
	res, err := decodeItemResults(resp.raw, ids)
	if err != nil {
		return nil, resp.replayed, fmt.Errorf("prism: %s: %w", op, err)
	}
	return res, resp.replayed, nil
}

// decodeItemResults maps results[] to the ids sent: by the id a result
// names, else by position (the brief says results may carry id null).
func decodeItemResults(raw []byte, ids []string) ([]ItemResult, error) {
	var w struct {
		Results []struct {
			ID     *string         `json:"id"`
			Status string          `json:"status"`
			Error  json.RawMessage `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	if len(w.Results) != len(ids) {
		return nil, fmt.Errorf("%w: %d results for %d ids", ErrUnexpectedResponse, len(w.Results), len(ids))
	}
	out := make([]ItemResult, len(ids))
	for i, r := range w.Results {
		if r.ID != nil && *r.ID != ids[i] {
			return nil, fmt.Errorf("%w: result %d is for id %q, not %q", ErrUnexpectedResponse, i, *r.ID, ids[i])
		}
		ir := ItemResult{ID: ids[i], OK: r.Status == "ok"}
		if !ir.OK {
			ir.Error = decodeRowError(r.Error)
			if ir.Error == nil {
				ir.Error = &RowError{Code: "error", Message: "status " + r.Status}
			}
			ir.NotFound = ir.Error.Code == "not_found"
		}
		out[i] = ir
	}
	return out, nil
}

// IsBatchTooLarge reports a batch refused for holding too many items.
func IsBatchTooLarge(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusBadRequest && ae.Code == "too_many_items"
}
