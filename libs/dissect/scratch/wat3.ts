import { readFileSync } from 'node:fs';
async function main(){
  const wabt = await require('wabt')();
  const mod = wabt.parseWat('k.wat', readFileSync(__dirname+'/../src/likelihood.wat','utf8'), {simd:true, threads:true});
  const bin = mod.toBinary({}).buffer;
  const D=5000,S=20000,N=512,K=100; const stride=S; const SC=2560;
  const scratch=1<<22; const packBase=scratch; const smBase=packBase+D*1024*4; const pages=Math.ceil((smBase+D*S*4)/65536);
  const mem=new WebAssembly.Memory({initial:pages,maximum:65536,shared:true});
  const inst=await WebAssembly.instantiate(await WebAssembly.compile(bin),{env:{mem}});
  const lik=(inst.exports as any).likelihood as Function;
  const f32=new Float32Array(mem.buffer); const i32=new Int32Array(mem.buffer);
  let s=1; for(let i=0;i<D*S;i++){s=(s*1103515245+12345)&0x7fffffff; f32[smBase/4+i]=(s/0x7fffffff)*1e-3;}
  const offs=0, cp=4096, out=cp+K*32, q=out+65536;
  for(let r=0;r<K;r++){const p=0.998-r/K*0.028; const c=1-p+1e-7; for(let l=0;l<4;l++){f32[cp/4+r*8+l]=c; f32[cp/4+r*8+4+l]=p;}}
  const idx=new Int32Array(N*K);let z=7;for(let i=0;i<N*K;i++){z=(z*1103515245+12345)&0x7fffffff;idx[i]=z%D;}
  for (const B of [32, 64,128,256,512]) for (const pack of [false,true]){
    const t=performance.now();
    for(let j0=0;j0<SC;j0+=B){ const groups=B/8;
      let base=smBase+j0*4, rs=stride*4;
      if(pack){ for(let i=0;i<D;i++) f32.copyWithin(packBase/4+i*B, smBase/4+i*stride+j0, smBase/4+i*stride+j0+B); base=packBase; rs=B*4; }
      for(let k=0;k<N;k++){ for(let r=0;r<K;r++) i32[offs/4+r]=idx[k*K+r]*rs;
        lik(base, groups, offs, cp, 0, K, 12, q, out);
      }}
    const dt=performance.now()-t; console.log('B',B,'pack',pack,'ns/op',dt/(N*K*SC)*1e6,'est full single s',dt*S/SC/1000);
  }
}
main();
