import { computeSimilarityOn, inlineExecutor, allocSharedMatrix, DissectPool } from '@cm/dissect';
function fill(d: Float32Array, seed: number, scale: number, offset: number){let x=seed;for(let i=0;i<d.length;i++){x^=x<<13;x>>>=0;x^=x>>>17;x^=x<<5;x>>>=0;d[i]=offset+scale*(x/4294967296-0.5);}}
async function main(){
  const D=5000,S=20000,N=512;
  const P=allocSharedMatrix(D,S); fill(P.data,1,0.1,0.2); const Q=allocSharedMatrix(D,N); fill(Q.data,2,2,0);
  const Q2=allocSharedMatrix(D,N); fill(Q2.data,3,2,0);
  let t=performance.now(); await computeSimilarityOn(inlineExecutor,'soft_wpmi',P,Q); console.log('inline cold',performance.now()-t);
  t=performance.now(); await computeSimilarityOn(inlineExecutor,'soft_wpmi',P,Q2); console.log('inline warm',performance.now()-t);
  const pool=new DissectPool({workers:1}); await pool.similarity('soft_wpmi',P,Q);
  t=performance.now(); await pool.similarity('soft_wpmi',P,Q2); console.log('pool1 warm',performance.now()-t);
  await pool.close();
}
main();
