//! Lexical retrieval: Okapi BM25 over stemmed terms, used for the knowledge base (articles and
//! their best paragraph, cited by id) and for the catalogue's free-text part.

use std::collections::HashMap;

use crate::data::Article;

/// Words too common to carry meaning in a customer's question.
const STOP_WORDS: &[&str] = &[
    "a", "about", "am", "an", "and", "any", "are", "as", "at", "be", "by", "can", "could", "do",
    "does", "for", "from", "get", "have", "how", "i", "if", "in", "is", "it", "its", "me", "my",
    "of", "on", "or", "our", "please", "so", "that", "the", "their", "there", "this", "to", "us",
    "was", "we", "what", "when", "where", "which", "will", "with", "would", "you", "your", "want",
    "need", "know", "tell",
];

/// Words that frame a question ("how long", "how much") rather than say what it is about; the
/// knowledge base ignores them (an article that mentions "long inseams" is not about time limits).
const QUESTION_WORDS: &[&str] = &["long", "much", "mani"];

/// What a framing asks for, added to the query: "how long" asks for a time span (policies state
/// them in days).
const FRAMINGS: &[(&str, &[&str])] = &[("how long", &["day"]), ("how soon", &["day"])];

/// Lower-cased, stemmed content words of `text` (numbers kept, stop words dropped).
#[must_use]
pub fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .map(|w| kiln_eval::porter_stem(&w))
        .collect()
}

/// A BM25 index over documents given as term lists.
#[derive(Debug, Clone)]
pub struct Bm25 {
    docs: Vec<HashMap<String, f64>>,
    lengths: Vec<f64>,
    avg_len: f64,
    doc_freq: HashMap<String, usize>,
    k1: f64,
    b: f64,
}

impl Bm25 {
    /// Indexes `docs` with the usual `k1 = 1.2`, `b = 0.75`.
    #[must_use]
    pub fn new(docs: &[Vec<String>]) -> Self {
        let mut doc_freq: HashMap<String, usize> = HashMap::new();
        let counts: Vec<HashMap<String, f64>> = docs
            .iter()
            .map(|d| {
                let mut tf = HashMap::new();
                for t in d {
                    *tf.entry(t.clone()).or_insert(0.0) += 1.0;
                }
                for t in tf.keys() {
                    *doc_freq.entry(t.clone()).or_insert(0) += 1;
                }
                tf
            })
            .collect();
        let lengths: Vec<f64> = docs.iter().map(|d| d.len() as f64).collect();
        let avg_len = (lengths.iter().sum::<f64>() / lengths.len().max(1) as f64).max(1.0);
        Self {
            docs: counts,
            lengths,
            avg_len,
            doc_freq,
            k1: 1.2,
            b: 0.75,
        }
    }

    /// The BM25 score of every document for `query`.
    #[must_use]
    pub fn scores(&self, query: &[String]) -> Vec<f64> {
        let n = self.docs.len() as f64;
        (0..self.docs.len())
            .map(|i| {
                query
                    .iter()
                    .map(|t| {
                        let Some(&tf) = self.docs[i].get(t) else {
                            return 0.0;
                        };
                        let df = self.doc_freq.get(t).copied().unwrap_or(0) as f64;
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        let norm =
                            self.k1 * (1.0 - self.b + self.b * self.lengths[i] / self.avg_len);
                        idf * tf * (self.k1 + 1.0) / (tf + norm)
                    })
                    .sum()
            })
            .collect()
    }
}

/// A hit in the knowledge base.
#[derive(Debug, Clone, PartialEq)]
pub struct KbHit {
    /// Index of the article.
    pub article: usize,
    /// Its BM25 score.
    pub score: f64,
    /// Index of its paragraph that best matches the question.
    pub paragraph: usize,
}

/// The knowledge base with its index. Titles and tags count three times (they say what an
/// article is about).
#[derive(Debug, Clone)]
pub struct KnowledgeBase {
    articles: Vec<Article>,
    index: Bm25,
}

impl KnowledgeBase {
    /// Indexes the articles.
    #[must_use]
    pub fn new(articles: Vec<Article>) -> Self {
        let docs: Vec<Vec<String>> = articles
            .iter()
            .map(|a| {
                let head = format!("{} {}", a.title, a.tags.join(" "));
                let mut t = terms(&head);
                t.extend(terms(&head));
                t.extend(terms(&head));
                t.extend(terms(&a.paragraphs.join(" ")));
                t
            })
            .collect();
        Self {
            index: Bm25::new(&docs),
            articles,
        }
    }

    /// The articles.
    #[must_use]
    pub fn articles(&self) -> &[Article] {
        &self.articles
    }

    /// The `k` best articles for `question` with a positive score, best first.
    #[must_use]
    pub fn search(&self, question: &str, k: usize) -> Vec<KbHit> {
        let mut query = terms(question);
        query.retain(|t| !QUESTION_WORDS.contains(&t.as_str()));
        let lower = question.to_lowercase();
        for (framing, words) in FRAMINGS {
            if lower.contains(framing) {
                query.extend(words.iter().flat_map(|w| terms(w)));
            }
        }
        let mut ranked: Vec<(usize, f64)> = self
            .index
            .scores(&query)
            .into_iter()
            .enumerate()
            .filter(|(_, s)| *s > 0.0)
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked
            .into_iter()
            .take(k)
            .map(|(article, score)| KbHit {
                article,
                score,
                paragraph: self.best_paragraph(article, &query),
            })
            .collect()
    }

    fn best_paragraph(&self, article: usize, query: &[String]) -> usize {
        let paragraphs: Vec<Vec<String>> = self.articles[article]
            .paragraphs
            .iter()
            .map(|p| terms(p))
            .collect();
        if paragraphs.is_empty() {
            return 0;
        }
        let scores = Bm25::new(&paragraphs).scores(query);
        scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .map_or(0, |(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article(id: &str, title: &str, body: &[&str]) -> Article {
        Article {
            id: id.into(),
            title: title.into(),
            tags: vec![],
            paragraphs: body.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn finds_the_article_and_paragraph() {
        let kb = KnowledgeBase::new(vec![
            article(
                "KB-1",
                "Returns",
                &[
                    "Items can be returned within 30 days.",
                    "Refunds go to the card.",
                ],
            ),
            article(
                "KB-2",
                "Shipping",
                &["Standard shipping takes 3-5 business days."],
            ),
        ]);
        let hits = kb.search("How many days does shipping take?", 2);
        assert_eq!(hits[0].article, 1);
        let hits = kb.search("when is my refund paid back to my card", 1);
        assert_eq!((hits[0].article, hits[0].paragraph), (0, 1));
        assert!(kb.search("zebra", 3).is_empty());
        assert_eq!(terms("The Returns, returning!"), ["return", "return"]);
    }
}
