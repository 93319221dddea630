package prismtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// The record endpoints of §8 of the API brief that a sync with deletes
// uses: POST /{objectType}/batch/delete ({"ids": [...]}), POST
// /{objectType}/batch/update ({"items": [{id, default?, list?}]}), both at
// most MaxBatchItems per call, each item independent, overall 200 with
// results[{id|null, status "ok"|"error", error?, record?}] and
// summary{total, succeeded, failed}; DELETE /{objectType}/{id} (soft
// delete) and POST /{objectType}/{id}/restore, answering the record
// {id, default, list}.
//
// A deleted record is kept and marked, as Server.Delete does: it matches no
// dedupe, is no valid reference and is left out of Records, Count, Record
// and Find; Deleted lists it. An id that is not a live record is a per-item
// "not_found" error in a batch (and a 404 for DELETE by id): the brief does
// not say what Micro answers for an id deleted before, so the fake takes
// the strict reading and lets the client decide what that means.

// MaxBatchItems caps the ids of a batch/delete and the items of a
// batch/update (§8: ≤100 per call); more is a 400 "too_many_items".
const MaxBatchItems = 100

// Request kinds of the record endpoints.
const (
	KindBatchDelete  Kind = "batch_delete"  // POST /v2/prism/{teamId}/{objectType}/batch/delete
	KindBatchUpdate  Kind = "batch_update"  // POST /v2/prism/{teamId}/{objectType}/batch/update
	KindRecordDelete Kind = "record_delete" // DELETE /v2/prism/{teamId}/{objectType}/{id}
	KindRestore      Kind = "restore"       // POST /v2/prism/{teamId}/{objectType}/{id}/restore
)

// classifyRecord sorts the record paths: parts are the path segments after
// /v2/prism/{teamId}.
func classifyRecord(info *RequestInfo, method string, parts []string) {
	switch {
	case len(parts) == 3 && parts[1] == "batch" && parts[2] == "delete":
		info.Kind, info.ObjectType = KindBatchDelete, parts[0]
	case len(parts) == 3 && parts[1] == "batch" && parts[2] == "update":
		info.Kind, info.ObjectType = KindBatchUpdate, parts[0]
	case len(parts) == 3 && parts[2] == "restore":
		info.Kind, info.ObjectType, info.RecordID = KindRestore, parts[0], parts[1]
	case len(parts) == 2 && method == http.MethodDelete:
		info.Kind, info.ObjectType, info.RecordID = KindRecordDelete, parts[0], parts[1]
	}
}

// handleRecord answers the record endpoints, with the same Idempotency-Key
// rules as imports (§5: every Prism POST takes one).
func (s *Server) handleRecord(r *http.Request, info RequestInfo, body []byte, bodyErr error, fault Fault, entry *LogEntry) response {
	rid := entry.RequestID
	want := http.MethodPost
	if info.Kind == KindRecordDelete {
		want = http.MethodDelete
	}
	if r.Method != want {
		resp := errorResponse(rid, http.StatusMethodNotAllowed, "method_not_allowed", "use "+want)
		resp.header = http.Header{"Allow": {want}}
		return resp
	}
	if !validObjectType(info.ObjectType) {
		return errorResponse(rid, http.StatusBadRequest, "invalid_object_type", fmt.Sprintf("unknown object type %q", info.ObjectType))
	}
	_, hasKey := r.Header["Idempotency-Key"]
	key := info.IdempotencyKey
	if hasKey && (len(key) < 1 || len(key) > 255) {
		return errorResponse(rid, http.StatusBadRequest, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 characters")
	}
	if bodyErr != nil {
		return errorResponse(rid, http.StatusBadRequest, "invalid_request", "could not read request body")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.settleLocked(now)
	fp, replay, done := s.replayLocked(r, key, hasKey, body, now, entry)
	if done {
		return replay
	}
	var resp response
	switch info.Kind {
	case KindBatchDelete:
		resp = s.batchDeleteLocked(info, body, entry)
	case KindBatchUpdate:
		resp = s.batchUpdateLocked(info, body, entry, now)
	case KindRecordDelete:
		resp = s.deleteByIDLocked(info, rid)
	case KindRestore:
		resp = s.restoreLocked(info, rid)
	}
	if hasKey && resp.status < 500 && fault.Kind != FaultErrorAfterApply {
		s.claims[key] = &claim{fingerprint: fp, at: now, resp: resp}
	}
	return resp
}

type itemResult struct {
	ID     *string         `json:"id"`
	Status string          `json:"status"`
	Error  *wireError      `json:"error,omitempty"`
	Record json.RawMessage `json:"record,omitempty"`
}

type batchSummary struct {
	Total     int `json:"total"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
}

func batchResponse(results []itemResult) response {
	sum := batchSummary{Total: len(results)}
	for _, r := range results {
		if r.Status == "ok" {
			sum.Succeeded++
		} else {
			sum.Failed++
		}
	}
	body, err := json.Marshal(struct {
		Results []itemResult `json:"results"`
		Summary batchSummary `json:"summary"`
	}{results, sum})
	if err != nil {
		panic(fmt.Sprintf("prismtest: encode batch response: %v", err))
	}
	return response{status: http.StatusOK, body: body}
}

func notFound(id string) itemResult {
	return itemResult{ID: &id, Status: "error", Error: &wireError{Code: "not_found", Message: "no live record with this id"}}
}

// liveSeq returns the live record with the canonical id, or 0. Caller holds s.mu.
func (s *Server) liveSeq(object, id string) (*objectStore, seq) {
	st := s.objects[object]
	if st == nil {
		return nil, 0
	}
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return st, 0
	}
	n := st.record(u)
	if n == 0 || st.rec(n).deleted {
		return st, 0
	}
	return st, n
}

func (s *Server) batchDeleteLocked(info RequestInfo, body []byte, entry *LogEntry) response {
	var req struct {
		IDs []json.RawMessage `json:"ids"`
	}
	if err := strictDecode(body, &req); err != nil || req.IDs == nil {
		return errorResponse(entry.RequestID, http.StatusBadRequest, "invalid_request", `want {"ids": [...]}`)
	}
	if len(req.IDs) > MaxBatchItems {
		return errorResponse(entry.RequestID, http.StatusBadRequest, "too_many_items",
			fmt.Sprintf("at most %d ids per batch/delete, got %d", MaxBatchItems, len(req.IDs)))
	}
	entry.Objects = len(req.IDs)
	s.stats.BatchDeletes++
	results := make([]itemResult, len(req.IDs))
	for i, raw := range req.IDs {
		var id string
		if json.Unmarshal(raw, &id) != nil {
			results[i] = itemResult{Status: "error", Error: &wireError{Code: "invalid_id", Message: "id must be a string"}}
			continue
		}
		st, n := s.liveSeq(info.ObjectType, id)
		if n == 0 {
			results[i] = notFound(id)
			continue
		}
		st.markDeleted(n)
		s.stats.Deletes++
		results[i] = itemResult{ID: &id, Status: "ok"}
	}
	return batchResponse(results)
}

func (s *Server) batchUpdateLocked(info RequestInfo, body []byte, entry *LogEntry, now time.Time) response {
	var req struct {
		Items []struct {
			ID      string          `json:"id"`
			Default json.RawMessage `json:"default"`
			List    json.RawMessage `json:"list"`
		} `json:"items"`
	}
	if err := strictDecode(body, &req); err != nil || req.Items == nil {
		return errorResponse(entry.RequestID, http.StatusBadRequest, "invalid_request", `want {"items": [{"id": ..., "default": {...}}]}`)
	}
	if len(req.Items) > MaxBatchItems {
		return errorResponse(entry.RequestID, http.StatusBadRequest, "too_many_items",
			fmt.Sprintf("at most %d items per batch/update, got %d", MaxBatchItems, len(req.Items)))
	}
	entry.Objects = len(req.Items)
	s.stats.BatchUpdates++
	results := make([]itemResult, len(req.Items))
	for i, it := range req.Items {
		id := it.ID
		st, n := s.liveSeq(info.ObjectType, id)
		if n == 0 {
			results[i] = notFound(id)
			continue
		}
		props := map[string]any{}
		if len(it.Default) > 0 && !isNull(it.Default) {
			dec := json.NewDecoder(bytes.NewReader(it.Default))
			dec.UseNumber()
			if err := dec.Decode(&props); err != nil {
				results[i] = itemResult{ID: &id, Status: "error", Error: &wireError{Code: "invalid_request", Message: "default must be an object"}}
				continue
			}
		}
		if werr := validateProps(props, s.known[info.ObjectType]); werr != nil {
			results[i] = itemResult{ID: &id, Status: "error", Error: werr}
			continue
		}
		text, err := json.Marshal(props)
		if err != nil {
			panic(fmt.Sprintf("prismtest: re-encode properties: %v", err))
		}
		var list []byte
		if len(it.List) > 0 && !isNull(it.List) {
			list = it.List
		}
		st.patch(n, item{props: text, list: list}, "", now)
		s.stats.RecordUpdates++
		rec, _ := json.Marshal(wireRecord(st, n))
		results[i] = itemResult{ID: &id, Status: "ok", Record: rec}
	}
	return batchResponse(results)
}

func (s *Server) deleteByIDLocked(info RequestInfo, rid string) response {
	st, n := s.liveSeq(info.ObjectType, info.RecordID)
	if n == 0 {
		return errorResponse(rid, http.StatusNotFound, "not_found", "no live record with this id")
	}
	st.markDeleted(n)
	s.stats.Deletes++
	body, _ := json.Marshal(wireRecord(st, n))
	return response{status: http.StatusOK, body: body}
}

func (s *Server) restoreLocked(info RequestInfo, rid string) response {
	st := s.objects[info.ObjectType]
	var n seq
	if st != nil {
		if u, err := uuid.Parse(info.RecordID); err == nil && u.String() == info.RecordID {
			n = st.record(u)
		}
	}
	if n == 0 {
		return errorResponse(rid, http.StatusNotFound, "not_found", "no record with this id")
	}
	if st.rec(n).deleted {
		st.markRestored(n)
		s.stats.Restores++
	}
	body, _ := json.Marshal(wireRecord(st, n))
	return response{status: http.StatusOK, body: body}
}

// markDeleted soft-deletes record n: out of every dedupe index, kept.
func (st *objectStore) markDeleted(n seq) {
	for _, idx := range st.indexes {
		if key, ok := st.recKey(idx, n); ok {
			idx.remove(st.hash(key), n)
		}
	}
	st.rec(n).deleted = true
	st.deleted++
}

// markRestored undoes markDeleted: the record matches on dedupe again.
func (st *objectStore) markRestored(n seq) {
	st.rec(n).deleted = false
	st.deleted--
	for _, idx := range st.indexes {
		if key, ok := st.recKey(idx, n); ok {
			idx.add(st.hash(key), n)
		}
	}
}

type recordBody struct {
	ID      string          `json:"id"`
	Default json.RawMessage `json:"default"`
	List    json.RawMessage `json:"list"`
}

func wireRecord(st *objectStore, n seq) recordBody {
	props := st.text.get(st.rec(n).props)
	if len(props) == 0 {
		props = []byte("{}")
	}
	list := st.lists[n]
	if list == nil {
		list = []byte("null")
	}
	return recordBody{ID: st.rec(n).id.String(), Default: bytes.Clone(props), List: bytes.Clone(list)}
}

// strictDecode decodes a JSON object, refusing unknown fields as the
// generated SDK types would not send them.
func strictDecode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// Deleted returns copies of the deleted records of an object type, in
// creation order.
func (s *Server) Deleted(object string) []Record { return s.export(object, true) }
