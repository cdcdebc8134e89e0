//! Historical retrieval over any number of entity rows. The rows are read in chunks of at most
//! `EngineOptions::entity_chunk_rows`; each chunk is answered by the in-memory join
//! (`Engine::historical`) and its answer streamed out before the next is taken, so memory is
//! bounded by about two chunks (one being answered, one being sent) whatever the input's size.
//! The answer keeps the input order, since chunks are answered in order.
//!
//! Each chunk reads the feature rows of its own time window (`[min T - ttl, max T]`), so N chunks
//! read the feature data up to N times: entity rows sorted by time make the windows disjoint and
//! let the Parquet statistics skip what a chunk does not need.

use futures::StreamExt;
use futures::stream::BoxStream;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::engine::{Engine, HistoricalRequest};
use crate::error::Result;
use crate::repo::Repository;

/// Answer batches in entity order; an error ends the stream.
pub type BatchStream = BoxStream<'static, Result<RecordBatch>>;

/// Groups a stream of batches into chunks of at most `rows` rows (batches are sliced where a
/// chunk ends).
struct Chunks<I> {
    inner: I,
    rows: usize,
    carry: Option<RecordBatch>,
}

impl<I: Iterator<Item = Result<RecordBatch>>> Iterator for Chunks<I> {
    type Item = Result<Vec<RecordBatch>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut chunk = Vec::new();
        let mut have = 0;
        while have < self.rows {
            let batch = match self.carry.take() {
                Some(batch) => batch,
                None => match self.inner.next() {
                    None => break,
                    Some(Err(e)) => return Some(Err(e)),
                    Some(Ok(batch)) => batch,
                },
            };
            let room = self.rows - have;
            if batch.num_rows() > room {
                self.carry = Some(batch.slice(room, batch.num_rows() - room));
                chunk.push(batch.slice(0, room));
                have += room;
            } else if batch.num_rows() > 0 {
                have += batch.num_rows();
                chunk.push(batch);
            }
        }
        (!chunk.is_empty()).then_some(Ok(chunk))
    }
}

impl Engine {
    /// Historical retrieval over `entities` (batches of rows with `schema`), read on a blocking
    /// thread chunk by chunk. The first chunk is answered before this returns, so what is wrong
    /// with the request or the definitions comes back as an error rather than as a broken stream;
    /// callers that must not fail half-way check every entity batch first (`check_entities`).
    pub async fn historical_streamed<I>(
        &self,
        repo: Repository,
        schema: SchemaRef,
        request: HistoricalRequest,
        entities: I,
    ) -> Result<(SchemaRef, BatchStream)>
    where
        I: Iterator<Item = Result<RecordBatch>> + Send + 'static,
    {
        let rows = self.options.entity_chunk_rows.max(1);
        let (chunk_tx, mut chunk_rx) = tokio::sync::mpsc::channel::<Result<Vec<RecordBatch>>>(1);
        tokio::task::spawn_blocking(move || {
            for chunk in (Chunks { inner: entities, rows, carry: None }) {
                let failed = chunk.is_err();
                if chunk_tx.blocking_send(chunk).is_err() || failed {
                    break;
                }
            }
        });
        let first = chunk_rx.recv().await.transpose()?.unwrap_or_default();
        let (out_schema, first) = self.historical(&repo, &first, schema.clone(), &request).await?;

        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let engine = self.clone();
        tokio::spawn(async move {
            while let Some(chunk) = chunk_rx.recv().await {
                let answer = match chunk {
                    Ok(chunk) => engine.historical(&repo, &chunk, schema.clone(), &request).await,
                    Err(e) => Err(e),
                };
                match answer {
                    Ok((_, batches)) => {
                        for batch in batches {
                            if tx.send(Ok(batch)).await.is_err() {
                                return; // the reader went away
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        let rest = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        Ok((out_schema, futures::stream::iter(first.into_iter().map(Ok)).chain(rest).boxed()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;
    use crate::error::Error;

    fn batch(from: i64, n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(from..from + n))]).expect("batch")
    }

    #[test]
    fn chunks_slice_batches_keep_order_and_skip_empty_ones() {
        let input = vec![Ok(batch(0, 5)), Ok(batch(5, 0)), Ok(batch(5, 9)), Ok(batch(14, 1))];
        let chunks: Vec<Vec<RecordBatch>> = Chunks { inner: input.into_iter(), rows: 4, carry: None }.map(|c| c.expect("chunk")).collect();
        let sizes: Vec<usize> = chunks.iter().map(|c| c.iter().map(|b| b.num_rows()).sum()).collect();
        assert_eq!(sizes, vec![4, 4, 4, 3]);
        let values: Vec<i64> = chunks.iter().flatten().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect();
        assert_eq!(values, (0..15).collect::<Vec<_>>());
        assert!(chunks.iter().flatten().all(|b| !b.column(0).is_empty()));
    }

    #[test]
    fn a_read_error_ends_the_chunks() {
        let input = vec![Ok(batch(0, 2)), Err(Error::invalid("broken")), Ok(batch(2, 2))];
        let mut chunks = Chunks { inner: input.into_iter(), rows: 10, carry: None };
        assert!(chunks.next().expect("a chunk").is_err());
    }
}
